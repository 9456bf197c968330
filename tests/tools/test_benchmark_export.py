"""tools/benchmark_export.py as a user runs it (its main()): the tiny Foreground Probing YOLOX at
128 px, 2 timed calls; the table's rows and columns, and its ratio against its own printed
medians; the test-resize overrides that put each kind of config at the benchmark size (through
the config's real test mapper); user errors in one line with exit status 2."""
import importlib.util
import re

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from detectron2.config import instantiate  # noqa: E402
from detectron2.data import transforms as T  # noqa: E402

from sod2.engine.lazy_train import load_config  # noqa: E402
from tests.modules import REPO, tool_module  # noqa: E402

TINY = "configs/fgprobe/fgprobe_yolox_tiny_p2_synthetic.py"


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def test_table_from_main(tmp_path, capsys):
    out = tmp_path / "speed.md"
    rc = tool_module("benchmark_export").main(["--models", str(REPO / TINY), "--image-size", "128", "--iters", "2",
                                               "--warmup", "1", "--threads", "1", "--output", str(out),
                                               "--int8", "sod2_synthetic_val", "--int8-images", "2"])
    assert rc == 0
    text = out.read_text()
    assert capsys.readouterr().out.endswith(text)
    lines = text.splitlines()
    header = lines[0]
    assert "torch_intra_op=1, onnxruntime_intra_op=1" in header and "onnxruntime 1." in header
    assert "128x128 noise image" in header and "median ± IQR of 2 calls after 1 warm-up" in header
    columns = _cells(lines[2])
    assert columns == ["model", "config", "test resize", "input (HxW)", "eager (ms)", "ONNX Runtime (ms)",
                       "eager / ORT", "ORT INT8 (ms, eager / INT8)", "OpenVINO (ms)", "detections eager / ORT"]
    rows = [_cells(ln) for ln in lines[4:] if ln.startswith("|")]
    assert len(rows) == 1
    row = dict(zip(columns, rows[0]))
    assert row["config"] == f"`{TINY}`"
    # the config tests at 256 (YOLOXTestResize + square padding): set to 128 for a 128 px image
    assert row["test resize"] == "YOLOXTestResize(256) -> (128)"
    assert row["input (HxW)"] == "128x128"
    eager = float(re.fullmatch(r"([\d.]+) ± [\d.]+", row["eager (ms)"]).group(1))
    ort = float(re.fullmatch(r"([\d.]+) ± [\d.]+", row["ONNX Runtime (ms)"]).group(1))
    ratio = float(re.fullmatch(r"([\d.]+)x", row["eager / ORT"]).group(1))
    assert eager > 0 and ort > 0
    # the medians are printed to 0.05 ms: the ratio of the printed values, within that rounding
    lo, hi = (eager - 0.05) / (ort + 0.05), (eager + 0.05) / max(ort - 0.05, 1e-9)
    assert lo - 0.005 <= ratio <= hi + 0.005
    q = re.fullmatch(r"([\d.]+) ± [\d.]+ \(([\d.]+)x\)", row["ORT INT8 (ms, eager / INT8)"])
    assert q is not None and float(q.group(1)) > 0
    q_ms, q_ratio = float(q.group(1)), float(q.group(2))
    assert (eager - 0.05) / (q_ms + 0.05) - 0.005 <= q_ratio <= (eager + 0.05) / max(q_ms - 0.05, 1e-9) + 0.005
    if importlib.util.find_spec("openvino") is None:
        assert row["OpenVINO (ms)"] == "not installed"
    n_eager, n_ort = map(int, row["detections eager / ORT"].split(" / "))
    # same weights, same input: the same detections; the calibrated random weights detect, so
    # both sides time their NMS too
    assert n_eager == n_ort > 0


@pytest.mark.parametrize("config,size,resize,opts", [
    ("configs/baselines/faster_rcnn_R50_fpn_visdrone_1x.py", 640,
     "ResizeShortestEdge(1024, max 1280) -> (640, max 1280)", 1),
    ("configs/rtdetr/rtdetr_r18vd_coco.py", 640, "Resize(640x640)", 0),
    ("configs/rtdetr/rtdetr_r18vd_coco.py", 320, "Resize(640x640) -> (320x320)", 3),
    ("configs/yolox/yolox_s_coco.py", 640, "YOLOXTestResize(640)", 0),
])
def test_size_overrides_reach_the_network_size(config, size, resize, opts):
    tool = tool_module("benchmark_export")
    overrides, desc = tool.size_overrides(load_config(str(REPO / config), [], warn=False), size)
    assert desc == resize and len(overrides) == opts
    cfg = load_config(str(REPO / config), overrides, warn=False)
    mapper = instantiate(cfg.dataloader.test.mapper)
    aug_input = T.AugInput(np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8))
    mapper.augmentations(aug_input)  # the test mapper's resize on a size x size image
    assert aug_input.image.shape[:2] == (size, size)
    if "rtdetr" in config:  # the precomputed anchors follow the size
        assert list(cfg.model.encoder.eval_spatial_size) == [size, size]
        assert list(cfg.model.decoder.query_selection.eval_spatial_size) == [size, size]


@pytest.mark.parametrize("argv,msg", [
    (["--models", "yolox_q"], "--models: unknown model 'yolox_q'"),
    (["--models", "yolox_s", "--iters", "0"], "--iters must be at least 1"),
    (["--models", "configs/nope.py"], "configs/nope.py: no such file"),
])
def test_user_errors_one_line_exit_2(tmp_path, capsys, argv, msg):
    out = tmp_path / "speed.md"
    rc = tool_module("benchmark_export").main(argv + ["--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and msg in err[0]
    assert not out.exists()
