"""``tools/export_model.py`` for the Detectron2-style families (sod2.export.rcnn) as a user runs
it: the config and its checkpoint in, ``model.onnx`` + ``model.json`` out, run through
``sod2.inference.OnnxModel`` with a Detectron2 model's call; the detections equal the PyTorch
model's in the original image size (same count and labels, boxes within 1e-2 px, scores 1e-4)."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402

from sod2.inference import OnnxModel  # noqa: E402
from tests.export.test_export_rcnn import FAMILIES, _assert_same_detections, _build, _image  # noqa: E402
from tests.modules import REPO, tool_module  # noqa: E402


@pytest.mark.parametrize("name,family", [("faster_rcnn", "rcnn"), ("retinanet", "retinanet")])
def test_export_tool_and_runtime_give_the_models_detections(name, family, tmp_path):
    model = _build(name)  # seeded, perturbed: no tied scores
    DetectionCheckpointer(model, str(tmp_path)).save("weights")
    rc = tool_module("export_model").main([
        "--config-file", str(REPO / FAMILIES[name][0]), "--format", "onnx", "--output", str(tmp_path / "export"),
        "--dynamic", "--opts", f"train.init_checkpoint={tmp_path / 'weights.pth'}"])
    assert rc == 0
    meta = json.loads((tmp_path / "export" / "model.json").read_text())
    assert meta["family"] == family and meta["dynamic"] and not meta["dynamic_batch"]
    assert meta["channel_order"] == model.input_format
    onnx_model = OnnxModel(str(tmp_path / "export" / "model.onnx"))
    img = _image()
    g = torch.Generator().manual_seed(2)
    for x in [img, torch.rand(3, 160, 232, generator=g) * 255]:  # the export's size and another one
        inputs = [{"image": x, "height": 300, "width": 400}]
        with torch.no_grad():
            ref = model(inputs)[0]["instances"]
        got = onnx_model(inputs)[0]["instances"]
        assert len(ref) > 0
        _assert_same_detections(got, ref)


@pytest.mark.parametrize("name,family", [("faster_rcnn", "rcnn"), ("cfinet", "rcnn"), ("cascade_rcnn", "rcnn"),
                                         ("faster_rcnn_srtod", "rcnn"), ("retinanet", "retinanet"),
                                         ("retinanet_srtod", "retinanet")])
def test_every_detectron2_style_config_has_an_export_family(name, family):
    from sod2.export.graphs import family_of, graph_for
    from sod2.export.rcnn import RCNNExportModule, RetinaNetExportModule

    model = _build(name)
    assert family_of(model) == family
    assert isinstance(graph_for(model), RetinaNetExportModule if family == "retinanet" else RCNNExportModule)


def test_a_model_of_no_export_family_is_one_user_error():
    from sod2.errors import UserError
    from sod2.export.graphs import family_of

    with pytest.raises(UserError, match="Linear cannot be exported"):
        family_of(torch.nn.Linear(2, 2))
