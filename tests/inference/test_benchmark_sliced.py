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


def test_benchmark_sliced_refuses_bad_settings():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark_sliced.py"), "--overlap", "1.2",
                           "--output", "never-written.md"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --slice must be positive and --overlap in [0, 1), got 800, 1.2"]
    assert not (REPO / "never-written.md").exists()
