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

from detectron2.config import LazyConfig  # noqa: E402
from detectron2.modeling.postprocessing import detector_postprocess  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from sod2.export.parity import pair_detections, random_model  # noqa: E402
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
    return random_model(cfg, seed=0, noise=0.02)  # the initialisation's symmetries broken: no tied scores


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


def _assert_same_detections(got: Instances, ref: Instances, box_tol: float = 1e-2, score_tol: float = 1e-4):
    """Same count, and a one-to-one pairing of the detections with equal labels, boxes within
    ``box_tol`` px and scores within ``score_tol`` (sod2.export.parity.pair_detections), each
    ONNX detection at most 3 places from its PyTorch twin in the score order (two detections
    whose scores differ by less than the numeric error may come out swapped; the first image's
    sizes give ~1 such pair in 1000)."""
    pairing = pair_detections(got, ref, box_tol, score_tol)
    assert pairing.passed and pairing.max_shift <= 3, pairing


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
    _assert_same_detections(_postprocess(boxes, scores, classes), ref)


def test_parity_check_catches_a_wrong_detection(exported):
    """The pairing above refuses a changed label, a moved box and a changed score."""
    _, _, _, _, ref, (boxes, scores, classes, _) = exported
    for what in ("label", "box", "score"):
        b, s, c = boxes.copy(), scores.copy(), classes.copy()
        if what == "label":
            c[0] = (c[0] + 1) % 3
        elif what == "box":
            b[0, 2] += 0.05
        else:
            s[0] -= 5e-4
        with pytest.raises(AssertionError):
            _assert_same_detections(_postprocess(b, s, c), ref)


def test_dynamic_size_faster_rcnn(tmp_path):
    """Exported with dynamic height/width at one size, run at two others (one not a multiple
    of 32, one landscape of odd sizes): the model's own detections at each size."""
    model = _build("faster_rcnn")
    path = str(tmp_path / "dyn.onnx")
    axes = {2: torch.export.Dim("height", min=32, max=4096), 3: torch.export.Dim("width", min=32, max=4096)}
    with torch.no_grad():
        torch.onnx.export(build_rcnn_export_module(model), (_image()[None],), path, dynamo=True,
                          opset_version=19, input_names=["images"],
                          output_names=["boxes", "scores", "classes", "batch_index"],
                          dynamic_shapes=(axes,), verbose=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for h, w in [(160, 224), (97, 301)]:
        img = torch.rand(3, h, w, generator=torch.Generator().manual_seed(h)) * 255
        with torch.no_grad():
            ref = model([{"image": img}])[0]["instances"]
        boxes, scores, classes, _ = sess.run(None, {"images": img[None].numpy()})
        inst = Instances((h, w))
        inst.pred_boxes, inst.scores, inst.pred_classes = Boxes(torch.as_tensor(boxes)), \
            torch.as_tensor(scores), torch.as_tensor(classes)
        assert len(ref) >= 20
        _assert_same_detections(detector_postprocess(inst, h, w), ref)


def test_unsupported_heads_refused():
    """A model with a mask head is refused by name (boxes only)."""
    model = _build("faster_rcnn")
    model.roi_heads.mask_on = True
    with pytest.raises(TypeError, match="mask"):
        build_rcnn_export_module(model)


def test_batch_of_two_refused():
    """The graphs are batch 1: a batch of two is refused, not silently cut to its first image."""
    wrapper = build_rcnn_export_module(_build("retinanet"))
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\), got \(2, 3, 64, 64\)"):
        wrapper(torch.zeros(2, 3, 64, 64))
