"""RT-DETR's optimisation recipe: gradient clipping inside the optimizer (norm after the step,
AMP's unscale before it), the parameter groups (backbone lr factor, no weight decay on norms
and biases), the constant schedule with linear warm-up, EMA and multi-scale settings."""
import math
import tempfile

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.solver import LRMultiplier
from detectron2.structures import Boxes, Instances
from omegaconf import OmegaConf
from torch import nn

from sod2.config import get_config
from sod2.engine.ema import build_model_ema
from sod2.engine.hooks import build_recipe_hooks
from sod2.engine.multiscale import MultiScaleHook, choose_size, resize_batch
from sod2.solver import ClippedAdamW, ClippedSGD, LRFactorByPrefix, with_grad_clip

from ..modules import config_module


def _recipe_module():
    return config_module("common/recipes/rtdetr.py")


def _two_params():
    a = nn.Parameter(torch.zeros(3))
    b = nn.Parameter(torch.zeros(2, 2))
    a.grad = torch.tensor([3.0, 0.0, 4.0])
    b.grad = torch.tensor([[0.0, 12.0], [0.0, 0.0]])  # total L2 norm sqrt(9 + 16 + 144) = 13
    return a, b


# --------------------------------------------------------------------------- clipping

def test_clipped_norm_after_step():
    a, b = _two_params()
    opt = ClippedSGD([{"params": [a]}, {"params": [b]}], lr=1.0, clip_max_norm=0.1)
    opt.step()
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for p in (a, b)))
    assert total == pytest.approx(0.1, rel=1e-5)  # all groups together, one norm
    assert float(opt.grad_norm) == pytest.approx(13.0)
    # direction kept: SGD(lr 1) moved the parameters by -0.1 * g / 13
    assert torch.allclose(a.detach(), -torch.tensor([3.0, 0.0, 4.0]) * 0.1 / 13, atol=1e-7)
    assert torch.allclose(b.detach(), -torch.tensor([[0.0, 12.0], [0.0, 0.0]]) * 0.1 / 13, atol=1e-7)


def test_small_gradients_and_clipping_off_leave_gradients_alone():
    a, b = _two_params()
    ClippedSGD([a, b], lr=0.0, clip_max_norm=100.0).step()
    assert a.grad.tolist() == [3.0, 0.0, 4.0]
    a, b = _two_params()
    opt = ClippedSGD([a, b], lr=0.0, clip_max_norm=0.0)
    opt.step()
    assert a.grad.tolist() == [3.0, 0.0, 4.0] and opt.grad_norm is None
    # parameters without gradients are skipped
    c = nn.Parameter(torch.ones(2))
    a, b = _two_params()
    ClippedSGD([a, b, c], lr=0.0, clip_max_norm=1.0).step()
    assert c.grad is None


def test_closure_gradients_are_clipped():
    w = nn.Parameter(torch.tensor([1.0, 1.0]))
    opt = ClippedSGD([w], lr=1.0, clip_max_norm=0.5)

    def closure():
        opt.zero_grad()
        loss = (10 * w).sum()  # gradient (10, 10)
        loss.backward()
        return loss

    assert opt.step(closure).item() == 20.0
    assert torch.allclose(w.detach(), torch.tensor([1.0, 1.0]) - 0.5 / math.sqrt(2))


def _amp_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def _loss(model):
    x = torch.linspace(-1, 1, 12).reshape(3, 4)
    return (model(x) * 30).pow(2).sum()  # gradient norm far above 0.1


@pytest.mark.parametrize("fused", [False, True])
def test_amp_unscales_before_clipping(fused):
    """GradScaler.step() unscales, then the optimizer clips: the same update as without scaling
    (clipping the scaled gradients would shrink the update 1024-fold)."""
    ref = _amp_model()
    opt = torch.optim.AdamW(ref.parameters(), lr=0.1)
    _loss(ref).backward()
    norm = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.1)
    assert norm > 1.0
    opt.step()

    model = _amp_model()
    copt = ClippedAdamW(model.parameters(), lr=0.1, clip_max_norm=0.1, fused=fused)
    assert copt._step_supports_amp_scaling is False  # GradScaler must unscale first
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(_loss(model)).backward()
    scaler.step(copt)
    scaler.update()
    assert float(copt.grad_norm) == pytest.approx(float(norm), rel=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    # an overflow skips the step, clipping included
    before = [p.detach().clone() for p in model.parameters()]
    copt.zero_grad()
    scaler.scale(_loss(model) * float("inf")).backward()
    scaler.step(copt)
    scaler.update()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_with_grad_clip_config_round_trip():
    cfg = OmegaConf.create({"optimizer": get_config("common/optim.py").AdamW})
    with_grad_clip(cfg.optimizer, max_norm=0.1)
    cfg.optimizer.params.lr_factor_func = L(LRFactorByPrefix)(factors={"0.": 0.5})
    path = tempfile.mktemp(suffix=".yaml")
    LazyConfig.save(cfg, path)
    loaded = LazyConfig.load(path)
    loaded.optimizer.params.model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    opt = instantiate(loaded.optimizer)
    assert type(opt) is ClippedAdamW and opt.clip_max_norm == 0.1 and opt.clip_norm_type == 2.0
    assert sorted(g["lr"] for g in opt.param_groups) == [0.5e-4, 1e-4]
    with pytest.raises(ValueError, match="no clipping version"):
        with_grad_clip(L(torch.optim.RMSprop)(lr=0.1))
    by_name = OmegaConf.create({"_target_": "torch.optim.SGD"}, flags={"allow_objects": True})
    assert with_grad_clip(by_name)._target_ is ClippedSGD


# --------------------------------------------------------------------------- the recipe

class _Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))
        self.backbone[0].weight.requires_grad_(False)  # frozen: not optimised at all
        self.encoder = nn.ModuleDict({"proj": nn.Linear(4, 4), "norm": nn.LayerNorm(4),
                                      "attn": nn.MultiheadAttention(4, 2, batch_first=True)})
        self.decoder = nn.ModuleDict({"embed": nn.Embedding(3, 4), "head": nn.Linear(4, 2)})


def _recipe_configs(lr=None, backbone_lr_factor=None, warmup_iters=0, multi_scale=True):
    """A config assembled from RT-DETR's recipe nodes as a config file does (the synthetic
    data, common/train.py), with the given ordinary overrides; 100 iterations."""
    recipe = _recipe_module()
    cfg = OmegaConf.create({"dataloader": get_config("common/data/synthetic.py").dataloader,
                            "train": get_config("common/train.py").train, "optimizer": recipe.optimizer,
                            "lr_multiplier": recipe.linear_warmup(100, warmup_iters) if warmup_iters
                            else recipe.constant_lr})
    cfg.dataloader.train.mapper = recipe.train_mapper
    cfg.train.ema = recipe.ema
    cfg.train.multiscale = recipe.multiscale
    if lr is not None:
        cfg.optimizer.lr = lr
    if backbone_lr_factor is not None:
        cfg.optimizer.params.lr_factor_func.factors = {"backbone.": backbone_lr_factor}
    if not multi_scale:
        cfg.train.multiscale.enabled = False
    return cfg


def test_optimizer_groups():
    cfg = _recipe_configs()
    model = _Detector()
    cfg.optimizer.params.model = model
    opt = instantiate(cfg.optimizer)
    assert type(opt) is ClippedAdamW and opt.clip_max_norm == 0.1
    assert opt.defaults["betas"] == (0.9, 0.999)
    got = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    lr, wd = 1e-4, 1e-4
    expect = {
        "backbone.1.weight": (lr * 0.1, 0.0), "backbone.1.bias": (lr * 0.1, 0.0),
        "backbone.2.weight": (lr * 0.1, wd), "backbone.2.bias": (lr * 0.1, 0.0),
        "encoder.proj.weight": (lr, wd), "encoder.proj.bias": (lr, 0.0),
        "encoder.norm.weight": (lr, 0.0), "encoder.norm.bias": (lr, 0.0),
        "encoder.attn.in_proj_weight": (lr, wd), "encoder.attn.in_proj_bias": (lr, 0.0),
        "encoder.attn.out_proj.weight": (lr, wd), "encoder.attn.out_proj.bias": (lr, 0.0),
        "decoder.embed.weight": (lr, wd), "decoder.head.weight": (lr, wd), "decoder.head.bias": (lr, 0.0),
    }
    names = dict(model.named_parameters())
    assert set(got) == {id(names[n]) for n in expect}  # the frozen conv is left out
    for n, (elr, ewd) in expect.items():
        assert got[id(names[n])] == (pytest.approx(elr), ewd), n
    # the Better Sampling recipe: lr 2e-4, backbone factor kept
    cfg = _recipe_configs(lr=2e-4, backbone_lr_factor=0.5)
    cfg.optimizer.params.model = model
    opt = instantiate(cfg.optimizer)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(names["backbone.2.weight"])] == pytest.approx(1e-4) and lrs[id(names["decoder.head.weight"])] == 2e-4
    assert LRFactorByPrefix({"backbone.": 0.1})("backbone_x.w") == 1.0  # prefixes, not substrings


def _lrs(sched_cfg, max_iter, base_lr=1.0):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=base_lr)
    m = LRMultiplier(opt, multiplier=instantiate(sched_cfg), max_iter=max_iter)
    out = []
    for _ in range(max_iter):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        m.step()
    return out


def test_constant_schedule_and_linear_warmup():
    cfg = _recipe_configs()  # the reference: no warm-up, constant
    assert _lrs(cfg.lr_multiplier, 100) == [1.0] * 100
    cfg = _recipe_configs(warmup_iters=20)
    lrs = _lrs(cfg.lr_multiplier, 100)
    with pytest.raises(ValueError, match="warm-up"):
        _recipe_module().linear_warmup(100, 100)
    for i in range(20):
        assert lrs[i] == pytest.approx(0.001 + 0.999 * i / 20)  # Paddle's LinearWarmup(0.001, 2000)
    assert lrs[20:] == [1.0] * 80


def test_ema_and_multiscale_settings():
    cfg = _recipe_configs()
    ema = build_model_ema(cfg, nn.Linear(2, 2))
    assert ema is not None
    # the reference's d(u) = 0.9999 * (1 - exp(-u / 2000))
    assert ema.decay_at(2000) == pytest.approx(0.9999 * (1 - math.exp(-1)))
    assert ema.decay_at(1) == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    ms = cfg.train.multiscale
    assert ms.enabled and ms.period == 1 and ms.mode == "nearest" and list(ms.input_size) == [640, 640]
    assert list(ms.sizes) == [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800]
    off = _recipe_configs(multi_scale=False)
    assert not off.train.multiscale.enabled


def test_recipe_hooks_use_the_reference_sizes():
    """``build_recipe_hooks`` (sod2/engine/hooks.py) must pass ``sizes`` and ``mode`` on to the
    hook, else RT-DETR configs would silently train with YOLOX's multi-scale."""
    cfg = _recipe_configs()
    hooks = [h for h in build_recipe_hooks(cfg, None) if isinstance(h, MultiScaleHook)]
    assert len(hooks) == 1
    h = hooks[0]
    assert h.sizes == (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800), \
        "sod2/engine/hooks.py build_recipe_hooks does not pass train.multiscale.sizes"
    assert h.mode == "nearest" and h.period == 1


# --------------------------------------------------------------------------- multi-scale list

def test_choose_size_from_the_reference_list():
    sizes = (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)
    rng = np.random.RandomState(0)
    draws = [choose_size((640, 640), sizes, 32, rng) for _ in range(13000)]
    assert all(h == w for h, w in draws) and {h for h, _ in draws} == set(sizes)
    share = np.mean([h == 640 for h, _ in draws])
    assert share == pytest.approx(3 / 13, abs=0.015)  # 640 is listed three times
    assert np.mean([h == 480 for h, _ in draws]) == pytest.approx(1 / 13, abs=0.01)
    assert choose_size((320, 480), (320,), 32, rng) == (320, 480)  # the aspect of input_size
    with pytest.raises(ValueError, match="multiples of 32"):
        MultiScaleHook(sizes=(500,))


def test_nearest_resize_and_hook_with_sizes():
    ramp = torch.arange(8, dtype=torch.float32).repeat(3, 8, 1).to(torch.uint8)  # value = x
    inst = Instances((8, 8), gt_boxes=Boxes(torch.tensor([[1.0, 2.0, 5.0, 6.0]])), gt_classes=torch.tensor([0]))
    batch = [{"image": ramp, "instances": inst}]
    out = resize_batch(batch, (16, 16), (8, 8), mode="nearest")[0]
    assert out["image"][0, 3].tolist() == [float(j // 2) for j in range(16)]  # each pixel doubled
    assert out["instances"].gt_boxes.tensor.tolist() == [[2.0, 4.0, 10.0, 12.0]]
    hook = MultiScaleHook(input_size=(8, 8), sizes=(16, 32), period=1, divisor=16, mode="nearest")
    from types import SimpleNamespace

    hook.trainer = SimpleNamespace(iter=0, data_loader=[batch] * 6, model=nn.Linear(1, 1))
    hook.before_train()
    np.random.seed(0)
    shapes = []
    for it, b in enumerate(hook.trainer.data_loader):
        hook.trainer.iter = it
        shapes.append(tuple(b[0]["image"].shape[-2:]))
        hook.after_step()
    assert shapes[0] == (8, 8) and set(shapes[1:]) <= {(16, 16), (32, 32)} and len(set(shapes[1:])) == 2
