"""Export of sod2's Detectron2-style detectors (sod2.export.rcnn): Faster R-CNN, RetinaNet,
CFINet (CRPN + feature-imitation ROI heads), Cascade R-CNN and SR-TOD (Faster R-CNN, RetinaNet).

Each family at its small synthetic config, seeded random weights perturbed so that scores do
not tie: the wrapper in eager mode gives the model's own detections exactly, and the ONNX file
(torch's dynamo exporter, opset 19) under ONNX Runtime's CPU provider the same count and
labels, boxes within 1e-2 px, scores within 1e-4. Both sides go through Detectron2's
``detector_postprocess`` (the part that stays in Python) to an original size different from the
input's, so the comparison is the detections a user gets.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.modeling.postprocessing import detector_postprocess  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from sod2.export.rcnn import RCNNExportModule, RetinaNetExportModule, build_rcnn_export_module  # noqa: E402

H, W = 200, 264  # not a multiple of 32: the in-graph padding is exercised
ORIG_H, ORIG_W = 150, 198  # the dataset dict's height/width (detector_postprocess rescales)


def _cascade_small(cfg):
    """The Cascade R-CNN R50 config with the synthetic configs' small ResNet-FPN (64 channels)."""
    cfg.model.backbone.bottom_up = LazyConfig.load("configs/common/models/small_resnet.py").backbone
    cfg.model.backbone.out_channels = 64
    cfg.model.backbone.norm = ""
    cfg.model.pixel_std = [57.375, 57.120, 58.395]
    cfg.model.roi_heads.num_classes = 3
    for head in cfg.model.roi_heads.box_heads:
        head.fc_dims = [256, 256]
    for pred in cfg.model.roi_heads.box_predictors:
        pred.input_shape.channels = 256
    return cfg


FAMILIES = {
    "faster_rcnn": ("configs/baselines/faster_rcnn_R18s_fpn_synthetic.py", None, RCNNExportModule),
    "retinanet": ("configs/baselines/retinanet_R18s_fpn_synthetic.py", None, RetinaNetExportModule),
    "cfinet": ("configs/cfinet/cfinet_R18s_fpn_synthetic.py", None, RCNNExportModule),
    "cascade_rcnn": ("configs/baselines/cascade_rcnn_R50_fpn_aitod_1x.py", _cascade_small, RCNNExportModule),
    "faster_rcnn_srtod": ("configs/srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py", None, RCNNExportModule),
    "retinanet_srtod": ("configs/srtod/retinanet_srtod_R18s_fpn_synthetic.py", None, RetinaNetExportModule),
}


def _build(name):
    path, edit, _ = FAMILIES[name]
    cfg = LazyConfig.load(path)
    if edit is not None:
        cfg = edit(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():  # break the initialisation's symmetries: no tied scores
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _image():
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, H, W, generator=g) * 255


def _postprocess(boxes, scores, classes):
    """Graph outputs (input-image pixels) -> the Instances at the original size, as Detectron2."""
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(torch.as_tensor(boxes))
    inst.scores = torch.as_tensor(scores)
    inst.pred_classes = torch.as_tensor(classes)
    return detector_postprocess(inst, ORIG_H, ORIG_W)


@pytest.fixture(scope="module", params=list(FAMILIES))
def exported(request, tmp_path_factory):
    """(family name, model, wrapper, image, the model's Instances, ORT outputs)."""
    name = request.param
    model = _build(name)
    img = _image()
    with torch.no_grad():
        ref = model([{"image": img, "height": ORIG_H, "width": ORIG_W}])[0]["instances"]
        wrapper = build_rcnn_export_module(model)
        path = str(tmp_path_factory.mktemp("rcnn") / f"{name}.onnx")
        torch.onnx.export(wrapper, (img[None],), path, dynamo=True, opset_version=19,
                          input_names=["images"], output_names=["boxes", "scores", "classes", "batch_index"],
                          verbose=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"images": img[None].numpy()})
    return name, model, wrapper, img, ref, outs


def test_wrapper_type_and_enough_detections(exported):
    name, model, wrapper, _, ref, _ = exported
    assert type(wrapper) is FAMILIES[name][2]
    # the perturbed weights give a real comparison: many detections, scores (almost) never tied
    # (Cascade R-CNN's class-agnostic boxes with stage-averaged scores tie once in 713)
    assert len(ref) >= 20, len(ref)
    assert len(torch.unique(ref.scores)) >= 0.99 * len(ref)


def test_eager_wrapper_equals_model(exported):
    """The wrapper re-expresses Detectron2's data-dependent steps: bit-identical detections."""
    _, _, wrapper, img, ref, _ = exported
    with torch.no_grad():
        boxes, scores, classes, batch_index = wrapper(img[None])
    assert batch_index.dtype == torch.int64 and bool((batch_index == 0).all())
    got = _postprocess(boxes, scores, classes)
    assert len(got) == len(ref)
    assert torch.equal(got.pred_classes, ref.pred_classes)
    assert torch.equal(got.pred_boxes.tensor, ref.pred_boxes.tensor)
    assert torch.equal(got.scores, ref.scores)


def test_onnxruntime_parity(exported):
    _, _, _, _, ref, (boxes, scores, classes, batch_index) = exported
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert classes.dtype == np.int64 and batch_index.dtype == np.int64
    assert boxes.shape == (len(scores), 4) and (batch_index == 0).all()
    got = _postprocess(boxes, scores, classes)
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got.pred_classes.numpy(), ref.pred_classes.numpy())
    np.testing.assert_allclose(got.pred_boxes.tensor.numpy(), ref.pred_boxes.tensor.numpy(), rtol=0, atol=1e-2)
    np.testing.assert_allclose(got.scores.numpy(), ref.scores.numpy(), rtol=0, atol=1e-4)


def test_unsupported_heads_refused():
    """A model with a mask head is refused by name (boxes only)."""
    model = _build("faster_rcnn")
    model.roi_heads.mask_on = True
    with pytest.raises(TypeError, match="mask"):
        build_rcnn_export_module(model)
