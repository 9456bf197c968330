"""tools/benchmark_sliced.py, small: sod2 and SAHI give the same detections on the same model,
and the AP comparison runs."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_benchmark_sliced_small(tmp_path):
    pytest.importorskip("sahi")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark_sliced.py"), "--image-size", "200", "300",
         "--slice", "128", "--overlap", "0.25", "--repeats", "1", "--warmup", "0", "--ap", "--ap-images", "1",
         "--ap-size", "256", "--ap-input", "128", "--output", str(tmp_path / "r.md"), "--opts", "train.device=cpu",
         "model.roi_heads.box_predictor.test_topk_per_image=30"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "r.md").read_text()
    rows = [r for r in report.splitlines() if r.startswith("| no |") or r.startswith("| yes |")]
    assert len(rows) == 2 and all("| yes (" in r for r in rows)  # the same detections as SAHI
    assert "The model's forward alone on the same 6 prepared slices" in report  # 200x300, 128 px, stride 96
    assert "| sliced + full-image pass |" in report and "whole image resized to 128 px" in report
    assert "Where sod2 batch 1 (no full-image pass) spends its time" in report


def test_stage_times_sum_to_the_run():
    """Each stage label of SlicedInference is seen by the profiler; the stages and the rest add
    up to the wall time (a stage counted twice or nested would exceed it)."""
    import torch

    from sod2.inference import SlicedInference

    from ..modules import tool_module
    from .fake_detector import FakeDetector

    image = torch.zeros(3, 200, 300, dtype=torch.uint8)
    image[0, 10:30, 10:30] = 255
    image[0, 150:170, 250:290] = 255
    wrap = SlicedInference(FakeDetector(), slice_size=64, overlap=0.2, merge="greedynmm").eval()
    st = tool_module("benchmark_sliced").stage_times(lambda: wrap([{"image": image}]))
    assert set(st) == {"prepare", "forward", "convert", "merge", "other", "total"}
    assert all(st[k] > 0 for k in ("prepare", "forward", "convert", "merge"))
    assert st["prepare"] + st["forward"] + st["convert"] + st["merge"] <= st["total"] * 1.001
    assert st["other"] == pytest.approx(st["total"] - st["prepare"] - st["forward"] - st["convert"] - st["merge"])


def test_benchmark_sliced_refuses_bad_settings():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark_sliced.py"), "--overlap", "1.2",
                           "--output", "never-written.md"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --slice must be positive and --overlap in [0, 1), got 800, 1.2"]
    assert not (REPO / "never-written.md").exists()


def test_benchmark_guided_eval_small(tmp_path):
    """--guided-eval: one table with whole-image, SAHI, exhaustive and guided rows on a registered
    dataset; threshold 0 runs every slice and gives exhaustive slicing's AP."""
    pytest.importorskip("sahi")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark_sliced.py"), "--guided-eval", "sod2_synthetic_val",
         "--guided-images", "1", "--slice", "128", "--overlap", "0.25", "--guided-thresholds", "0", "0.999",
         "--guided-source", "model", "--output", str(tmp_path / "g.md"), "--opts", "train.device=cpu",
         "model.roi_heads.box_predictor.test_topk_per_image=30"],
        capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in (tmp_path / "g.md").read_text().splitlines() if r.startswith("| ") and "---" not in r}
    assert list(rows)[1:] == ["whole image (the model's test size)", "SAHI", "SAHI (+ full-image pass)",
                              "sod2 exhaustive", "sod2 exhaustive (+ full-image pass)", "sod2 guided, threshold 0",
                              "sod2 guided, threshold 0.999"]
    assert rows["sod2 guided, threshold 0"][-1] == "9.0" and rows["sod2 guided, threshold 0.999"][-1] == "0.0"
    ap = lambda r: rows[r][0]  # noqa: E731
    assert ap("sod2 guided, threshold 0") == ap("sod2 exhaustive (+ full-image pass)") == ap("SAHI (+ full-image pass)")
