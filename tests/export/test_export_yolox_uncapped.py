"""A YOLOX config without a per-image cap (``model.max_detections_per_image = None``, as the
official COCO configs ``configs/yolox/yolox_*_coco.py`` set it) exports (tools/export_model.py's
main()), its metadata says null, and ONNX Runtime through OnnxModel gives the eager model's
detections: all of them, no cap. The tiny Foreground Probing YOLOX at 128 px; weights perturbed
(seeded) so that a few hundred locations pass the score threshold."""
import os

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from detectron2.config import instantiate  # noqa: E402

from sod2.engine.lazy_train import load_config  # noqa: E402
from sod2.export.metadata import ExportMetadata  # noqa: E402
from sod2.inference import OnnxModel  # noqa: E402
from tests.modules import REPO, tool_module  # noqa: E402

CONFIG = str(REPO / "configs/fgprobe/fgprobe_yolox_tiny_p2_synthetic.py")
OPTS = ["model.max_detections_per_image=null", "model.backbone.square_pad=128",
        "dataloader.test.mapper.augmentations=[{_target_:sod2.data.transforms.YOLOXTestResize,size:128}]"]


def test_uncapped_yolox_exports_and_matches_eager(tmp_path):
    import cv2

    cfg = load_config(CONFIG, OPTS, warn=False)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    assert model.max_detections_per_image is None
    with torch.no_grad():  # spread-out scores: a few hundred locations above the threshold
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        for n, p in model.named_parameters():
            if n.startswith(("head.obj_preds", "head.cls_preds")):
                p.normal_(0, 10.0) if n.endswith("weight") else p.fill_(-3.0)
    ckpt = str(tmp_path / "w.pth")
    torch.save({"model": model.state_dict()}, ckpt)
    image = str(tmp_path / "noise.png")
    cv2.imwrite(image, np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    out = str(tmp_path / "export")
    rc = tool_module("export_model").main(["--config-file", CONFIG, "--output", out, "--sample-image", image,
                                           "--opts", *OPTS, f"train.init_checkpoint={ckpt}"])
    assert rc == 0
    assert ExportMetadata.from_json(os.path.join(out, "model.json")).max_detections_per_image is None

    d = instantiate(cfg.dataloader.test.mapper)({"file_name": image, "height": 128, "width": 128, "image_id": 0})
    inputs = [{k: d[k] for k in ("image", "height", "width", "resize_ratio")}]
    with torch.no_grad():
        ref = model(inputs)[0]["instances"]
    got = OnnxModel(os.path.join(out, "model.onnx"))(inputs)[0]["instances"]
    assert len(ref) > 50  # a real comparison: many detections, none capped on either side
    assert len(got) == len(ref)
    assert torch.equal(got.pred_classes, ref.pred_classes)
    assert torch.allclose(got.scores, ref.scores, atol=1e-4)
    assert torch.allclose(got.pred_boxes.tensor, ref.pred_boxes.tensor, atol=1e-2)
