"""INT8 post-training quantization (``tools/quantize_model.py``, :mod:`sod2.export.quantize`) as a
user runs it: a YOLOX-Tiny P2 + Foreground Probing export (``tools/export_model.py``, seeded
perturbed weights as in test_export_yolox_rtdetr.py) quantized on the images of a registered
dataset, run by :class:`sod2.inference.OnnxModel`, compared with the float32 export.

The calibration dataset here is registered by the test (noise images, so that the perturbed
network gives a few hundred detections with spread-out scores, see test_export_yolox_rtdetr.py);
the comparison images are other noise images. Bound asserted (int8 vs float32): of the float
model's 50 best detections, at least 45 are found by the int8 model (same class, IoU >= 0.5),
median IoU >= 0.95, those pairs' scores within 30% (measured: see the test).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.structures import pairwise_iou  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from sod2.errors import UserError  # noqa: E402
from sod2.export.metadata import ExportMetadata  # noqa: E402
from sod2.export.quantize import DatasetCalibrationReader, calibration_images, plan_quantization  # noqa: E402
from sod2.inference import OnnxModel  # noqa: E402
from tests.export.test_export_yolox_rtdetr import FG, _noise_image, _perturbed_state  # noqa: E402
from tests.modules import REPO, tool_module  # noqa: E402

CALIB = "sod2_test_quantize_noise"


def _meta(**kw) -> ExportMetadata:
    base = dict(format="onnx", model_file="model.onnx", family="yolox", meta_architecture="YOLOX",
                channel_order="BGR", pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0],
                test_resize={"kind": "none"}, input_size=None, dynamic=True, dynamic_batch=False,
                class_names=["a"], score_threshold=0.01, max_detections_per_image=100, clip_boxes=True,
                opset=19, sod2_version="0", torch_version="0", exporter="dynamo")
    base.update(kw)
    return ExportMetadata(**base)


@pytest.fixture
def registered(tmp_path):
    """Register datasets of ``dicts`` for the test, removed afterwards."""
    names = []

    def register(name, dicts):
        DatasetCatalog.register(name, lambda: [dict(d) for d in dicts])
        names.append(name)
        return name

    yield register
    for n in names:
        DatasetCatalog.remove(n)


def _solid(folder, name, h, w, bgr):
    import cv2

    path = os.path.join(folder, name)
    cv2.imwrite(path, np.broadcast_to(np.array(bgr, np.uint8), (h, w, 3)).copy())
    return {"file_name": path, "height": h, "width": w, "image_id": name}


# ----------------------------------------------------------------------------- calibration data
def test_calibration_reader_gives_the_test_resize_of_the_registered_datasets_images(tmp_path, registered):
    """A 60x100 (HxW) image of B=10, G=100, R=200: YOLOX's test resize to 64x64 scales by
    min(64/60, 64/100) = 0.64 to 38x64, Detectron2's ResizeShortestEdge(32, 1000) to 32x53
    (100 * 32/60 = 53.3); the pixels stay the constant colour in the export's channel order."""
    dicts = [_solid(str(tmp_path), f"{i}.png", 60, 100, (10, 100, 200)) for i in range(5)]
    name = registered("sod2_test_quantize_solid", dicts)
    cases = [(_meta(test_resize={"kind": "yolox", "size": [64, 64], "pre_resize": True}), (38, 64), [10, 100, 200]),
             (_meta(channel_order="RGB", test_resize={"kind": "shortest_edge", "short_edge_length": [32],
                                                      "max_size": 1000}), (32, 53), [200, 100, 10])]
    for meta, hw, colour in cases:
        records = calibration_images(name, 3, seed=0)
        reader = DatasetCalibrationReader(meta, records)
        feeds = []
        while (feed := reader.get_next()) is not None:
            feeds.append(feed)
        assert len(feeds) == 3
        for feed in feeds:
            x = feed["images"]
            assert set(feed) == {"images"} and x.dtype == np.float32 and x.shape == (1, 3, *hw)
            assert np.array_equal(x[0, :, 0, 0], colour) and (x == x[:, :, :1, :1]).all()
        reader.rewind()  # ONNX Runtime may read the data twice
        assert reader.get_next()["images"].shape == (1, 3, *hw)


def test_calibration_images_are_a_seeded_choice_without_repetition(tmp_path, registered):
    dicts = [{"file_name": f"{i}.png", "height": 8, "width": 8, "image_id": i} for i in range(40)]
    name = registered("sod2_test_quantize_choice", dicts)
    a = [d["image_id"] for d in calibration_images(name, 10, seed=0)]
    assert len(set(a)) == 10 and a == sorted(a) and set(a) <= set(range(40))
    assert a == [d["image_id"] for d in calibration_images(name, 10, seed=0)]
    assert a != [d["image_id"] for d in calibration_images(name, 10, seed=1)]
    assert [d["image_id"] for d in calibration_images(name, 40, seed=3)] == list(range(40))
    for n, what in [(41, "has only 40 images"), (0, "positive integer")]:
        with pytest.raises(UserError, match=what):
            calibration_images(name, n)
    with pytest.raises(UserError, match="not registered.*did you mean sod2_test_quantize_choice"):
        calibration_images("sod2_test_quantize_choise", 1)


def test_a_fixed_size_export_refuses_calibration_images_of_another_size(tmp_path):
    rec = _solid(str(tmp_path), "a.png", 60, 100, (0, 0, 0))
    reader = DatasetCalibrationReader(_meta(dynamic=False, input_size=[64, 64], test_resize={"kind": "none"}), [rec])
    with pytest.raises(UserError, match=r"a.png: resized to 60x100 .* takes 64x64 only"):
        reader.get_next()


# ------------------------------------------------------------------------- what stays float
def test_plan_quantizes_the_network_and_keeps_selection_decode_and_coordinates_float():
    """Hand-built graph: x -> conv1 -> relu -> conv2 (prediction) -> exp (decode) -> boxes;
    conv2 -> topk -> gather of relu's features -> matmul (refinement after a selection);
    relu -> conv_off -> add -> grid_sample's grid (coordinates) of relu -> conv3 -> out."""
    def w(name, *shape):
        return helper.make_tensor(name, TensorProto.FLOAT, shape, np.ones(int(np.prod(shape)), np.float32))

    n = helper.make_node
    nodes = [n("Conv", ["x", "w1"], ["c1"], name="conv1"), n("Relu", ["c1"], ["r"], name="relu"),
             n("Conv", ["r", "w2"], ["p"], name="conv2"), n("Exp", ["p"], ["boxes"], name="exp"),
             n("Flatten", ["p"], ["pf"], name="flatten_p"), n("TopK", ["pf", "k"], ["tv", "ti"], name="topk"),
             n("Flatten", ["r"], ["rf"], name="flatten_r"), n("Gather", ["rf", "ti"], ["g"], axis=1, name="gather"),
             n("MatMul", ["g", "wm"], ["refined"], name="matmul"),
             n("Conv", ["r", "wo"], ["off"], name="conv_off"), n("Add", ["off", "base"], ["grid"], name="add_grid"),
             n("GridSample", ["r", "grid"], ["s"], name="grid_sample"), n("Conv", ["s", "w3"], ["out"], name="conv3")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("boxes", "refined", "out")],
        [w("w1", 4, 3, 1, 1), w("w2", 2, 4, 1, 1), w("wm", 4, 4), w("wo", 2, 4, 1, 1), w("base", 1, 8, 8, 2),
         w("w3", 1, 4, 1, 1), helper.make_tensor("k", TensorProto.INT64, [1], [4])])
    quantize, excluded, counts = plan_quantization(helper.make_model(graph))
    assert set(quantize) == {"conv1", "relu", "conv2", "conv_off", "grid_sample", "conv3"}
    assert set(excluded) == {"exp", "flatten_p", "topk", "flatten_r", "gather", "matmul", "add_grid"}
    assert counts == {"Exp": 1, "Flatten": 2, "TopK": 1, "Gather": 1, "MatMul": 1, "Add": 1}


# ------------------------------------------------------------------ the tool on a YOLOX export
@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("quantize"))
    ckpt = os.path.join(tmp, "fg.pth")
    torch.save({"model": _perturbed_state(FG)}, ckpt)
    assert tool_module("export_model").main(["--config-file", str(REPO / FG), "--output", os.path.join(tmp, "float"),
                                             "--opts", f"train.init_checkpoint={ckpt}"]) == 0
    images = os.path.join(tmp, "images")
    os.makedirs(images)
    calib = [_noise_image(images, f"c{i}.png", 256, 256, 100 + i) for i in range(12)]
    DatasetCatalog.register(CALIB, lambda: [dict(d) for d in calib])
    try:
        rc = tool_module("quantize_model").main(["--onnx", os.path.join(tmp, "float", "model.onnx"), "--dataset", CALIB,
                                                 "--num-images", "8", "--seed", "3",
                                                 "--output", os.path.join(tmp, "int8")])
    finally:
        DatasetCatalog.remove(CALIB)
    assert rc == 0
    return dict(dir=tmp, float=os.path.join(tmp, "float", "model.onnx"), int8=os.path.join(tmp, "int8", "model.onnx"),
                tests=[_noise_image(images, f"t{i}.png", 256, 256, 200 + i) for i in range(3)])


def test_the_int8_graph_has_qdq_convolutions_and_float_post_processing(quantized):
    model = onnx.load(quantized["int8"])
    producer = {o: node for node in model.graph.node for o in node.output}
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 100 and ops.count("DequantizeLinear") > 100
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    int8_convs = [c for c in convs if producer.get(c.input[0]) is not None and producer[c.input[0]].op_type
                  == "DequantizeLinear" and producer[c.input[1]].op_type == "DequantizeLinear"]
    assert len(int8_convs) == len(convs) == 103  # YOLOX-Tiny P2 + its head: every convolution
    # the selections, the decode and the outputs read float tensors, never a DequantizeLinear
    for node in model.graph.node:
        if node.op_type in ("TopK", "NonMaxSuppression", "Exp", "MatMul", "Softmax"):
            assert all(producer[t].op_type != "DequantizeLinear" for t in node.input if t in producer), node.name
    for out in model.graph.output:
        assert producer[out.name].op_type not in ("DequantizeLinear", "QuantizeLinear")
    meta = json.loads(open(quantized["int8"][:-5] + ".json").read())
    float_meta = json.loads(open(quantized["float"][:-5] + ".json").read())
    q = meta.pop("quantization")
    assert float_meta.pop("quantization") is None and meta == float_meta  # the rest: the float model's
    assert (q["dtype"], q["format"], q["dataset"], q["num_images"], q["seed"]) == ("int8", "QDQ", CALIB, 8, 3)


def test_the_int8_model_runs_in_onnx_model_with_the_float_models_detections(quantized):
    """Measured (ONNX Runtime 1.32 CPU, 3 noise images): 49-50 of the float model's 50 best
    detections found again (same class, IoU >= 0.5), median IoU 0.999, score differences of
    the pairs up to 11% of the float score (scores ~0.01-0.04). Asserted: >= 45/50, median IoU
    >= 0.95, score differences < 30%."""
    import cv2

    f32, i8 = OnnxModel(quantized["float"]), OnnxModel(quantized["int8"])
    assert i8.metadata.quantization["dtype"] == "int8"
    for rec in quantized["tests"]:
        image = torch.from_numpy(np.ascontiguousarray(cv2.imread(rec["file_name"]).transpose(2, 0, 1)))
        inputs = [{"image": image, "height": 256, "width": 256}]
        ref, got = f32(inputs)[0]["instances"][:50], i8(inputs)[0]["instances"]
        assert len(ref) == 50 and len(got) > 0 and torch.isfinite(got.scores).all()
        assert (got.scores[1:] <= got.scores[:-1]).all()
        iou = pairwise_iou(ref.pred_boxes, got.pred_boxes) * (ref.pred_classes[:, None] == got.pred_classes[None])
        best, j = iou.max(1)
        found = best >= 0.5
        assert found.sum() >= 45 and best.median() >= 0.95, (found.sum(), best)
        rel = (ref.scores[found] - got.scores[j[found]]).abs() / ref.scores[found]
        assert rel.max() < 0.3, rel


# ---------------------------------------------------------------------------------- refusals
def _cli(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "quantize_model.py"), *args],
                          capture_output=True, text=True, cwd=str(REPO), timeout=300)


def _one_error_line(stderr: str, *words):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_cli_refusals_are_one_line_and_leave_nothing(quantized, tmp_path):
    out = tmp_path / "out"
    r = _cli("--onnx", quantized["float"], "--dataset", "no_such_dataset", "--output", str(out))  # as a user runs it
    assert r.returncode == 2, r.stderr
    _one_error_line(r.stderr, "no_such_dataset", "not registered")
    assert not out.exists()
    main = tool_module("quantize_model").main
    (tmp_path / "damaged.onnx").write_bytes(b"\x08garbage")
    (tmp_path / "damaged.json").write_text(open(quantized["float"][:-5] + ".json").read())
    (tmp_path / "a_file").write_text("")
    (tmp_path / "nojson.onnx").write_bytes(open(quantized["float"], "rb").read())
    cases = [
        (["--onnx", str(tmp_path / "missing.onnx"), "--dataset", "sod2_synthetic_train"], ["missing.onnx", "no such"]),
        (["--onnx", str(tmp_path / "damaged.onnx"), "--dataset", "sod2_synthetic_train"],
         ["damaged.onnx", "not a readable ONNX model"]),
        (["--onnx", str(tmp_path / "nojson.onnx"), "--dataset", "sod2_synthetic_train"],
         ["nojson.json is missing"]),
        (["--onnx", quantized["int8"], "--dataset", "sod2_synthetic_train"], ["already quantized"]),
        (["--onnx", quantized["float"], "--dataset", "sod2_synthetic_train", "--num-images", "100000"],
         ["--num-images 100000", "only 480 images"]),
    ]
    for args, words in cases:
        rc, err = _run_main(main, [*args, "--output", str(out)])
        assert rc == 2, err
        _one_error_line(err, *words)
        assert not out.exists()
    for output, words in [(os.path.dirname(quantized["float"]), ["would overwrite the float model"]),
                          (str(tmp_path / "a_file"), ["a_file", "not a folder"])]:
        rc, err = _run_main(main, ["--onnx", quantized["float"], "--dataset", "sod2_synthetic_train",
                                   "--output", output])
        assert rc == 2
        _one_error_line(err, *words)


def test_unsupported_family_and_torchscript_are_refused_by_name(quantized, tmp_path):
    main = tool_module("quantize_model").main
    for field, value, words in [("family", "segmenter", ["not supported", "segmenter", "supported: yolox"]),
                                ("format", "torchscript", ["takes an ONNX export", "torchscript"])]:
        folder = tmp_path / field
        folder.mkdir()
        (folder / "model.onnx").write_bytes(open(quantized["float"], "rb").read())
        meta = json.loads(open(quantized["float"][:-5] + ".json").read())
        meta[field] = value
        (folder / "model.json").write_text(json.dumps(meta))
        out = tmp_path / f"out_{field}"
        rc = _run_main(main, ["--onnx", str(folder / "model.onnx"), "--dataset", "sod2_synthetic_train",
                              "--output", str(out)])
        assert rc[0] == 2
        _one_error_line(rc[1], *words)
        assert not out.exists()


def test_a_failure_during_calibration_leaves_nothing_behind(quantized, tmp_path, registered):
    """The fifth calibration image is damaged: the error names it (one line, exit 2) and the
    output folder holds neither a model nor its JSON nor a temporary file."""
    images = [_noise_image(str(tmp_path), f"{i}.png", 256, 256, i) for i in range(6)]
    with open(images[4]["file_name"], "wb") as f:
        f.write(b"not a png")
    name = registered("sod2_test_quantize_damaged", images)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("a user's file")
    rc, err = _run_main(tool_module("quantize_model").main, ["--onnx", quantized["float"], "--dataset", name,
                                                             "--num-images", "6", "--output", str(out)])
    assert rc == 2
    _one_error_line(err, "4.png", "cannot decode")
    assert sorted(os.listdir(out)) == ["keep.txt"]


def test_metadata_without_the_quantization_field_still_reads(quantized, tmp_path):
    meta = json.loads(open(quantized["float"][:-5] + ".json").read())
    del meta["quantization"]  # a model.json written before the field existed
    (tmp_path / "old.json").write_text(json.dumps(meta))
    assert ExportMetadata.from_json(str(tmp_path / "old.json")).quantization is None
    meta["quantization"] = {"dtype": "int4"}
    (tmp_path / "bad.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"bad.json: field 'quantization' must be null or a dict"):
        ExportMetadata.from_json(str(tmp_path / "bad.json"))


def _run_main(main, argv):
    """(exit status, stderr) of a tool's main()."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()
