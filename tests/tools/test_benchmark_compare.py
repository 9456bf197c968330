"""tools/benchmark.py (evaluator, models, consistency) and tools/compare_configs.py, small."""
import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
SYN = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")
SRTOD = str(REPO / "configs" / "srtod" / "faster_rcnn_srtod_R18s_fpn_synthetic.py")


def _run(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_benchmark_evaluator_small(tmp_path):
    out = _run(REPO / "tools" / "benchmark.py", "evaluator", "--images", "5", "--objects", "300",
               "--detections", "600", "--repeats", "1", "--output", tmp_path / "r.md")
    assert "Identical numbers" in out and ": yes" in out
    assert "| plain pycocotools script |" in (tmp_path / "r.md").read_text()


def test_benchmark_models_inference_only(synthetic_dataset):
    out = _run(REPO / "tools" / "benchmark.py", "models", "--config-a", SYN, "--config-b", SRTOD,
               "--iters", "1", "--warmup", "0", "--inference-only", "--image-size", "128", "128",
               "--opts-a", "train.device=cpu", "--opts-b", "train.device=cpu")
    assert "inference latency" in out and "B / A" in out and "train step" not in out


def test_benchmark_consistency(synthetic_dataset):
    out = _run(REPO / "tools" / "benchmark.py", "consistency", "--config", SRTOD, "--dataset",
               "sod2_synthetic_val", "--max-images", "2", "--opts-a", "train.device=cpu",
               "model.backbone.threshold.init=0.3", "--opts-b", "train.device=cpu",
               "model.backbone.threshold.init=0.3", "model.backbone.sampled_inference=False")
    row = out.strip().splitlines()[-1].split("|")
    assert int(row[5]) == 0  # every detection of A has its twin in B


def test_compare_configs(tmp_path, synthetic_dataset):
    from detectron2.data import DatasetCatalog  # noqa: F401

    opts = ["train.max_iter=2", "train.device=cpu", "dataloader.train.total_batch_size=2",
            "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
            "lr_multiplier.warmup_length=0.5", "lr_multiplier.scheduler.milestones=[1,2]",
            "lr_multiplier.scheduler.num_updates=3", "train.eval_period=2"]
    out = _run(REPO / "tools" / "compare_configs.py", "--configs", SRTOD,
               SRTOD + "::model.backbone.enabled=False", "--names", "SR-TOD", "plain",
               "--output-dir", tmp_path, "--opts", *opts)
    assert "| SR-TOD |" in out and "| plain |" in out
    table = (tmp_path / "comparison.md").read_text()
    assert "AP_verytiny" in table
    saved = json.loads(next((tmp_path / "plain").glob("*_metrics.json")).read_text())
    assert saved["protocol"] == "aitod"
    assert "loss_rec" not in (tmp_path / "plain" / "metrics.json").read_text()
    assert "loss_rec" in (tmp_path / "SR-TOD" / "metrics.json").read_text()
