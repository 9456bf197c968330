"""tools/lazyconfig_train_net.py: training, periodic evaluation, checkpoints, metrics,
--resume (iteration count and LR schedule continue), --eval-only, 2 CPU processes (gloo)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.engine import default_argument_parser

from sod2.engine.lazy_train import main

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")
# a short run on 2 training images per step, evaluated on a few validation images
SMALL = ["dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
         "dataloader.test.num_workers=0", "train.log_period=1", "train.checkpointer.period=2",
         "train.device=cpu"]


def _args(*extra, resume=False, eval_only=False):
    argv = ["--config-file", CONFIG] + (["--resume"] if resume else []) + \
        (["--eval-only"] if eval_only else []) + SMALL + list(extra)
    return default_argument_parser().parse_args(argv)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


def _small_val(monkeypatch):
    """Evaluate on the first 4 validation images only (keeps the test fast)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "sod2_synthetic_val_first4"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("sod2_synthetic_val")[:4])
        MetadataCatalog.get(name).set(**{k: v for k, v in
                                         MetadataCatalog.get("sod2_synthetic_val").as_dict().items()
                                         if k != "name"})
    return name


def test_train_crash_resume_and_eval_only(tmp_path, monkeypatch):
    from detectron2.engine import SimpleTrainer

    val = _small_val(monkeypatch)
    common = [f"dataloader.test.dataset.names={val}", "train.max_iter=6", "train.eval_period=3",
              "lr_multiplier.warmup_length=0.25", "lr_multiplier.scheduler.milestones=[3,5]",
              "lr_multiplier.scheduler.num_updates=6", "train.seed=0"]
    ref = tmp_path / "reference"
    main(_args(*common, f"train.output_dir={ref}"))
    ref_lr = {m["iteration"]: m["lr"] for m in _metrics(ref) if "total_loss" in m}
    assert sorted(ref_lr) == list(range(6))
    assert any("bbox/AP50" in m for m in _metrics(ref)), "periodic evaluation reaches metrics.json"
    assert list(ref.glob("events.out.tfevents.*")), "tensorboard events"

    # a run that dies at iteration 4 (after the checkpoint of iteration 3) ...
    out = tmp_path / "run"
    real_step = SimpleTrainer.run_step

    def crash_at_4(self):
        if self.iter == 4:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(SimpleTrainer, "run_step", crash_at_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(_args(*common, f"train.output_dir={out}"))
    monkeypatch.setattr(SimpleTrainer, "run_step", real_step)
    assert (out / "model_0000003.pth").exists()
    # ... resumed: continues at iteration 4 with the same learning rates as the reference
    main(_args(*common, f"train.output_dir={out}", resume=True))
    rows = [m for m in _metrics(out) if "total_loss" in m]
    assert [m["iteration"] for m in rows] == [0, 1, 2, 3, 4, 5]
    assert {m["iteration"]: m["lr"] for m in rows} == pytest.approx(ref_lr)
    assert (out / "model_final.pth").exists()
    # eval-only loads the final weights and evaluates
    res = main(_args(f"train.output_dir={tmp_path / 'eval'}", f"dataloader.test.dataset.names={val}",
                     f"train.init_checkpoint={out / 'model_final.pth'}", eval_only=True))
    assert "AP" in res["bbox"]


def test_two_cpu_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(REPO / "tools" / "lazyconfig_train_net.py"), "--config-file", CONFIG,
           "--num-gpus", "2", *SMALL, "dataloader.train.total_batch_size=2", "train.max_iter=3",
           "train.eval_period=0", f"train.output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "World size: 2" in proc.stderr + proc.stdout
    its = [m["iteration"] for m in _metrics(out) if "total_loss" in m]
    assert its[-1] == 2
    assert (out / "model_final.pth").exists()
