"""tools/benchmark_{evaluator,models,consistency}.py, the tools/benchmark.py dispatcher,
tools/pycocotools_eval.py (hand values) and tools/compare_configs.py, small."""
import json
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
SYN = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")
SRTOD = str(REPO / "configs" / "srtod" / "faster_rcnn_srtod_R18s_fpn_synthetic.py")


def _run(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_benchmark_evaluator_small(tmp_path):
    out = _run(REPO / "tools" / "benchmark_evaluator.py", "--images", "5", "--objects", "300",
               "--detections", "600", "--repeats", "1", "--output", tmp_path / "r.md")
    assert "Identical numbers" in out and ": yes" in out
    assert "| plain pycocotools script |" in (tmp_path / "r.md").read_text()


def test_benchmark_models_inference_only(synthetic_dataset):
    out = _run(REPO / "tools" / "benchmark_models.py", "--config-a", SYN, "--config-b", SRTOD,
               "--iters", "1", "--warmup", "0", "--inference-only", "--image-size", "128", "128",
               "--opts-a", "train.device=cpu", "--opts-b", "train.device=cpu")
    assert "inference latency" in out and "B / A" in out and "train step" not in out
    row = next(r for r in out.splitlines() if r.startswith("| inference latency"))
    a, b, r = (float(c.strip().rstrip("x")) for c in row.split("|")[2:5])
    assert a > 0 and b > 0 and abs(r - b / a) <= 0.005 + 0.01 * b / a  # the ratio of the printed medians


def test_benchmark_consistency(synthetic_dataset):
    out = _run(REPO / "tools" / "benchmark_consistency.py", "--config", SRTOD, "--dataset",
               "sod2_synthetic_val", "--max-images", "2", "--opts-a", "train.device=cpu",
               "model.feature_hook.threshold.init=0.3", "--opts-b", "train.device=cpu",
               "model.feature_hook.threshold.init=0.3", "model.feature_hook.sampled_inference=False")
    row = out.strip().splitlines()[-1].split("|")
    assert int(row[5]) == 0  # every detection of A has its twin in B


def test_pycocotools_eval_hand_values(tmp_path):
    """The evaluator benchmark's reference script on a set with known AP: class 1 has one 10x10
    box (AI-TOD tiny: 64-256 px²) found exactly, class 2 one 6x6 box (very tiny) with only a
    disjoint false positive. AP per class: 1 and 0, so AP = AP50 = 0.5, AP_tiny = 1 (class 2 has
    no tiny box: -1, left out), AP_verytiny = 0, no small or medium boxes: None."""
    pytest.importorskip("pycocotools")
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "area": 100,
                           "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 6, 6], "area": 36,
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 2, "bbox": [80, 80, 6, 6], "score": 0.8}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    _run(REPO / "tools" / "pycocotools_eval.py", tmp_path / "gt.json", tmp_path / "dt.json", tmp_path / "o.json")
    got = json.loads((tmp_path / "o.json").read_text())
    want = {"AP": 0.5, "AP50": 0.5, "AP_verytiny": 0.0, "AP_tiny": 1.0, "AP_small": None, "AP_medium": None}
    assert got.keys() == want.keys()
    for k, v in want.items():  # pycocotools' float64 means: 1 - 2e-16 for a precision of 1
        assert got[k] == v if v is None else got[k] == pytest.approx(v, abs=1e-12), k


def test_benchmark_dispatcher_forwards(tmp_path):
    """tools/benchmark.py <tool> runs that tool with the remaining arguments: its table, its
    --output file, its exit status 2 and one error line for a user error."""
    out = _run(REPO / "tools" / "benchmark.py", "evaluator", "--images", "2", "--objects", "20",
               "--detections", "30", "--repeats", "1", "--output", tmp_path / "r.md")
    assert "| tools/evaluate_json.py --protocol aitod |" in out
    assert "Dense set: 2 images, 20 objects, 30 detections" in (tmp_path / "r.md").read_text()
    for args, line in ((["evaluator", "--repeats", "0"], "error: --repeats must be at least 1, got 0"),
                       (["bogus"], "error: unknown tool 'bogus'"),
                       (["consistency", "--config", SYN, "--dataset", "nope"],
                        "error: --dataset: 'nope' is not a registered dataset"),
                       (["models", "--config-a", "nope.py", "--config-b", SYN], "error: config file nope.py")):
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark.py"), *args], capture_output=True,
                              text=True, cwd=REPO)
        assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(line), proc.stderr
        assert "Traceback" not in proc.stderr


def test_compare_configs(tmp_path, synthetic_dataset):
    from detectron2.data import DatasetCatalog  # noqa: F401

    opts = ["train.max_iter=2", "train.device=cpu", "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
            "lr_multiplier.warmup_length=0.5", "lr_multiplier.scheduler.milestones=[1,2]",
            "lr_multiplier.scheduler.num_updates=3", "train.eval_period=2"]
    out = _run(REPO / "tools" / "compare_configs.py", "--configs", SRTOD,
               SRTOD + "::model.feature_hook=null", "--names", "SR-TOD", "plain",
               "--output-dir", tmp_path, "--opts", *opts)
    assert "| SR-TOD |" in out and "| plain |" in out
    table = (tmp_path / "comparison.md").read_text()
    assert "AP_verytiny" in table
    saved = json.loads(next((tmp_path / "plain").glob("*_metrics.json")).read_text())
    assert saved["protocol"] == "aitod"
    assert "loss_rec" not in (tmp_path / "plain" / "metrics.json").read_text()
    assert "loss_rec" in (tmp_path / "SR-TOD" / "metrics.json").read_text()
