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


def test_override_checks():
    from sod2.engine.lazy_train import ConfigError, load_config

    srtod = str(REPO / "configs" / "srtod" / "faster_rcnn_srtod_R18s_fpn_synthetic.py")
    refused = {
        "nokey=1": "the config has no key 'nokey'; write +nokey=1 to add it",
        "train.max_iters=10": "no key 'train.max_iters' (did you mean 'train.max_iter'?)",
        "train.nosuch.x=1": "the config has no key 'train.nosuch'",
        "train.max_iter.x=1": "'train.max_iter' is int 600, not a config with keys",
        "model.nokey=1": "'model' (SOD2GeneralizedRCNN) takes no argument 'nokey'",
        "model.feature_hook.levl=p3": "(did you mean 'model.feature_hook.level'?)",
        "train.max_iter=abc": "train.max_iter is 600 in the config, so the value must be an integer, got 'abc'",
        "train.max_iter=1.5": "must be an integer, got 1.5",
        "train.amp.enabled=1": "must be true or false, got 1",
        "optimizer.lr=fast": "must be a number, got 'fast'",
        "lr_multiplier.scheduler.milestones=3": "must be a list",
        "model.backbone=3": "must be a config",
        "a=b=c": "cannot parse it",
        "novalue": "expected key=value",
    }
    for o, message in refused.items():
        with pytest.raises(ConfigError) as e:
            load_config(srtod, [o])
        assert message in str(e.value) and "\n" not in str(e.value), (o, str(e.value))
    # what the repository's tests, Makefile and READMEs pass keeps working
    cfg = load_config(srtod, SMALL + [
        "train.init_checkpoint=/x/model.pth", "model.feature_hook=null", "train.seed=0",
        "lr_multiplier.scheduler.milestones=[3,5]", "optimizer.lr=1",
        "dataloader.test.dataset.names=sod2_synthetic_val", "train.max_iter=6",
        "+train.brand_new=1", "train.float32_precision=high"])
    assert cfg.model.feature_hook is None and cfg.train.max_iter == 6
    assert cfg.dataloader.train.total_batch_size == 2 and cfg.optimizer.lr == 1
    assert cfg.train.brand_new == 1 and cfg.train.float32_precision == "high"
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(REPO / "configs" / "nope.py"))


def test_trainer_cli_refuses_bad_override_in_one_line(tmp_path):
    for extra, message in ((["nokey=1"], "error: override 'nokey=1': the config has no key 'nokey'"),
                           ([], "error: --config-file ")):
        cfg = CONFIG if extra else str(tmp_path / "missing.py")
        proc = subprocess.run([sys.executable, str(REPO / "tools" / "lazyconfig_train_net.py"),
                               "--config-file", cfg, *extra, f"train.output_dir={tmp_path / 'o'}"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert proc.stderr.strip().startswith(message) and "Traceback" not in proc.stderr
        assert not (tmp_path / "o").exists()


def test_output_dir_derived_from_config_name(tmp_path):
    from detectron2.config import LazyConfig

    from sod2.engine.lazy_train import derive_output_dir

    common = REPO / "configs" / "common" / "train.py"
    plain = tmp_path / "my_experiment.py"
    plain.write_text(f"from detectron2.config import LazyConfig\ntrain = LazyConfig.load({str(common)!r}).train\n")
    cfg = LazyConfig.load(str(plain))
    assert cfg.train.output_dir == "./output"  # the common default, shared by every config
    assert derive_output_dir(cfg, str(plain)) == "./output/my_experiment"
    cfg = LazyConfig.load(str(plain))
    cfg.train.output_dir = None
    assert derive_output_dir(cfg, str(plain)) == "./output/my_experiment"
    # an explicit override or the config's own folder is kept
    cfg = LazyConfig.load(str(plain))
    assert derive_output_dir(cfg, str(plain), ["train.output_dir=./output"]) == "./output"
    cfg = LazyConfig.load(CONFIG)
    assert derive_output_dir(cfg, CONFIG) == "./output/faster_rcnn_R18s_fpn_synthetic"
    own = tmp_path / "own.py"
    own.write_text(plain.read_text() + "train.output_dir = '/somewhere'\n")
    assert derive_output_dir(LazyConfig.load(str(own)), str(own)) == "/somewhere"
