"""Model EMA: the update formula by hand, the hook in a trainer, checkpoints (EMA as
"model", training weights restored on resume) and the LazyConfig trainer with EMA on."""
import json
import math
from pathlib import Path

import pytest
import torch
from detectron2.engine import HookBase, SimpleTrainer, default_argument_parser
from torch import nn

from sod2.engine.ema import EMACheckpointer, EMAHook, ModelEMA

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))


def test_decay_ramp_hand_values():
    ema = ModelEMA(_net(), decay=0.9998, ramp=2000)
    # 0.9998 * (1 - exp(-u / 2000)); exp(-1/2000) = 0.99950012497916...
    assert ema.decay_at(1) == pytest.approx(0.9998 * 0.00049987502083, rel=1e-9)
    assert ema.decay_at(2000) == pytest.approx(0.9998 * (1 - 0.36787944117144), rel=1e-12)
    assert ema.decay_at(10 ** 6) == pytest.approx(0.9998, rel=1e-12)
    assert ModelEMA(_net(), decay=0.9, ramp=0).decay_at(1) == 0.9


def test_update_formula_on_params_and_buffers():
    model = _net()
    ema = ModelEMA(model, decay=0.5, ramp=0)  # d = 0.5 at every update
    w0 = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].running_mean.fill_(4.0)  # BN buffers are averaged too
        model[1].num_batches_tracked.fill_(7)  # integers are copied
    ema.update(model)
    assert ema.updates == 1
    assert torch.allclose(ema.module[0].weight, w0 + 1.0)  # 0.5 w0 + 0.5 (w0 + 2)
    assert torch.allclose(ema.module[1].running_mean, torch.full((4,), 2.0))  # 0.5 * 0 + 0.5 * 4
    assert ema.module[1].num_batches_tracked.item() == 7
    assert not any(p.requires_grad for p in ema.module.parameters())
    # ramped decay: second update with d(2) of decay 0.9998, ramp 2000
    ema2 = ModelEMA(model, decay=0.9998, ramp=2000, updates=1)
    before = ema2.module[0].weight.clone()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema2.update(model)
    d = 0.9998 * (1 - math.exp(-2 / 2000))
    assert torch.allclose(ema2.module[0].weight, d * before + (1 - d) * model[0].weight)
    # DataParallel is unwrapped (CPU: DataParallel only holds the module)
    ema2.update(nn.DataParallel(model))
    assert ema2.updates == 3


class _Data:
    def __iter__(self):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randn(8, 3, generator=g)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, x):
        return {"loss": self.net(x).pow(2).mean()}


class _Record(HookBase):
    def __init__(self):
        self.states = []

    def after_step(self):
        self.states.append({k: v.clone() for k, v in self.trainer.model.state_dict().items()})


def _trainer(model):
    return SimpleTrainer(model, _Data(), torch.optim.SGD(model.parameters(), lr=0.1))


def test_hook_follows_the_training_weights():
    model = _Model()
    trainer = _trainer(model)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ema = ModelEMA(model, decay=0.9, ramp=5.0)
    rec = _Record()
    trainer.register_hooks([rec, EMAHook(ema)])
    trainer.train(0, 4)
    expect = init
    for u, w in enumerate(rec.states, start=1):
        d = 0.9 * (1 - math.exp(-u / 5.0))
        expect = {k: (d * v + (1 - d) * w[k]) if v.is_floating_point() else w[k] for k, v in expect.items()}
    got = ema.module.state_dict()
    for k, v in expect.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    assert ema.updates == 4


def test_checkpoint_round_trip(tmp_path):
    model = _Model()
    ema = ModelEMA(model, decay=0.5, ramp=0)
    trainer = _trainer(model)
    trainer.register_hooks([EMAHook(ema)])
    trainer.train(0, 3)
    EMACheckpointer(model, str(tmp_path), ema=ema, trainer=trainer).save("model_0000002")
    ckpt = torch.load(tmp_path / "model_0000002.pth", weights_only=False)
    # "model" is the EMA; the training weights and the update count are under "ema"
    for k, v in ema.module.state_dict().items():
        assert torch.equal(ckpt["model"][k], v)
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["ema"]["train_model"][k], v)
    assert ckpt["ema"]["updates"] == 3 and ckpt["trainer"]["iteration"] == 3  # after train()
    assert not torch.equal(ckpt["model"]["net.0.weight"], ckpt["ema"]["train_model"]["net.0.weight"])

    # resume: training weights, EMA and its count restored
    model2 = _Model()
    with torch.no_grad():
        for p in model2.parameters():
            p.zero_()
    ema2 = ModelEMA(model2, decay=0.5, ramp=0)
    trainer2 = _trainer(model2)
    cp = EMACheckpointer(model2, str(tmp_path), ema=ema2, trainer=trainer2)
    cp.resume_or_load("", resume=True)
    assert ema2.updates == 3 and trainer2.iter == 3
    for k, v in model.state_dict().items():
        assert torch.equal(model2.state_dict()[k], v)
        assert torch.equal(ema2.module.state_dict()[k], ema.module.state_dict()[k])
    # weights only (init_checkpoint, --eval-only): the EMA weights; the hook restarts from them
    model3 = _Model()
    ema3 = ModelEMA(model3, decay=0.5, ramp=0)
    EMACheckpointer(model3, ema=ema3).resume_or_load(str(tmp_path / "model_0000002.pth"), resume=False)
    for k, v in ema.module.state_dict().items():
        assert torch.equal(model3.state_dict()[k], v)
    assert ema3.updates == 0
    trainer3 = _trainer(model3)
    trainer3.register_hooks([EMAHook(ema3)])
    trainer3.train(0, 1)
    assert ema3.updates == 1


def _args(*extra, resume=False):
    small = ["dataloader.train.total_batch_size=1", "dataloader.train.num_workers=0",
             "dataloader.test.num_workers=0", "train.log_period=1", "train.device=cpu", "train.seed=0"]
    return default_argument_parser().parse_args(
        ["--config-file", CONFIG] + (["--resume"] if resume else []) + small + list(extra))


def test_lazy_trainer_with_ema_resume_and_eval(tmp_path, monkeypatch):
    """Faster R-CNN (EMA is not YOLOX-only): a run that crashes after the checkpoint of
    iteration 1 and resumes; the final "model" is the EMA continued across the resume, and
    evaluation ran on it."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    import sod2.engine.lazy_train as lt

    val = "sod2_synthetic_val_first2"
    if val not in DatasetCatalog.list():
        DatasetCatalog.register(val, lambda: DatasetCatalog.get("sod2_synthetic_val")[:2])
        MetadataCatalog.get(val).set(**{k: v for k, v in MetadataCatalog.get("sod2_synthetic_val").as_dict().items()
                                        if k != "name"})
    out = tmp_path / "run"
    common = ["train.ema.enabled=True", "train.ema.decay=0.5", "train.ema.ramp=0", "train.max_iter=3",
              "train.checkpointer.period=1", "train.eval_period=0", f"dataloader.test.dataset.names={val}",
              f"train.output_dir={out}", "lr_multiplier.warmup_length=0.5",
              "lr_multiplier.scheduler.milestones=[1,2]", "lr_multiplier.scheduler.num_updates=3"]
    real_step = SimpleTrainer.run_step

    def crash_at_2(self):
        if self.iter == 2:
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(SimpleTrainer, "run_step", crash_at_2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        lt.main(_args(*common))
    monkeypatch.setattr(SimpleTrainer, "run_step", real_step)
    c1 = torch.load(out / "model_0000001.pth", weights_only=False)
    assert c1["ema"]["updates"] == 2

    evaluated = []
    real_test = lt.do_test

    def recording_test(cfg, model):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_test(cfg, model)

    monkeypatch.setattr(lt, "do_test", recording_test)
    lt.main(_args(*common, resume=True))
    final = torch.load(out / "model_final.pth", weights_only=False)
    assert final["ema"]["updates"] == 3 and final["trainer"]["iteration"] == 2
    # EMA of update 3 = 0.5 * (EMA of update 2, resumed) + 0.5 * (training weights after it 2)
    for k, v in final["model"].items():
        w = final["ema"]["train_model"][k]
        if v.is_floating_point():
            assert torch.allclose(v, 0.5 * c1["model"][k] + 0.5 * w, atol=1e-6), k
    assert any(not torch.equal(v, final["ema"]["train_model"][k]) for k, v in final["model"].items()
               if v.is_floating_point())
    # the final evaluation used the EMA weights
    assert len(evaluated) == 1
    for k, v in final["model"].items():
        assert torch.equal(evaluated[0][k].cpu(), v), k
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    assert any("bbox/AP" in r for r in rows)
