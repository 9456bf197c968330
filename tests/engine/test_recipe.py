"""The YOLOX training recipe as Detectron2 pieces: warm-up + cosine schedule, parameter
groups without decay on norms and biases, the no-aug tail hook, multi-scale batches, and
the config keys that switch them on."""
import multiprocessing as mp
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.solver import LRMultiplier
from detectron2.structures import Boxes, Instances
from omegaconf import OmegaConf
from torch import nn

from sod2.config import get_config
from sod2.engine.hooks import NoAugTail, build_recipe_hooks, strong_augmentation_switch
from sod2.engine.lazy_train import ConfigError
from sod2.engine.multiscale import MultiScaleHook, draw_size, resize_batch
from sod2.inference import SlicedInference
from sod2.solver import WarmupCosineNoAugParamScheduler

from ..distributed import free_port, leave


# --------------------------------------------------------------------------- schedule

def test_warmcos_hand_values():
    f = WarmupCosineNoAugParamScheduler(total_iters=100, warmup_iters=10, no_aug_iters=20, min_lr_ratio=0.05)
    m = f.multiplier_at
    assert m(0) == 0.0
    assert m(5) == pytest.approx(0.25)  # (5/10)^2
    assert m(1) == pytest.approx(0.01)
    assert m(10) == pytest.approx(1.0)
    # cosine over 100 - 10 - 20 = 70 iterations: half-way (45) -> 0.05 + 0.475 * (1 + 0)
    assert m(45) == pytest.approx(0.525)
    # a quarter (27.5): cos(pi/4) = 0.70710678
    assert m(27.5) == pytest.approx(0.05 + 0.475 * 1.70710678, rel=1e-7)
    assert m(79.999) == pytest.approx(0.05, abs=1e-6)
    assert m(80) == m(90) == m(99) == 0.05
    # fvcore's convention: where = iteration / total
    assert f(0.45) == pytest.approx(0.525)


def test_warmcos_through_detectron2_lr_hook_and_config():
    """LR of iteration i is base_lr * f(i) under Detectron2's LRMultiplier, as the reference
    trainer's lr(i); the config helper builds the same schedule in epochs."""
    ns = {}
    exec(open(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "common", "schedules.py")).read(), ns)
    sched = instantiate(ns["warmcos_epoch_schedule"](epochs=10, iters_per_epoch=10, warmup_epochs=1,
                                                     no_aug_epochs=2))
    assert (sched.total_iters, sched.warmup_iters, sched.no_aug_iters, sched.min_lr_ratio) == (100, 10, 20, 0.05)
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    lrm = LRMultiplier(opt, multiplier=sched, max_iter=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        lrm.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.01 * 0.25) and lrs[10] == pytest.approx(0.01)
    assert lrs[45] == pytest.approx(0.01 * 0.525) and all(v == pytest.approx(5e-4) for v in lrs[80:])
    with pytest.raises(ValueError, match="no cosine phase"):
        WarmupCosineNoAugParamScheduler(10, 5, 5)


# --------------------------------------------------------------------------- optimizer

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 1, bias=True)
        self.gn = nn.GroupNorm(2, 4)
        self.fc = nn.Linear(4, 2)


def test_param_groups_no_decay_on_norms_and_biases():
    optim_cfg = get_config("common/optim.py").SGD_nesterov_nodecay_norm_bias
    model = _Net()
    optim_cfg.params.model = model
    opt = instantiate(optim_cfg)
    assert isinstance(opt, torch.optim.SGD)
    d = opt.defaults
    assert (d["lr"], d["momentum"], d["nesterov"], d["weight_decay"]) == (0.01, 0.9, True, 5e-4)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    # the reference's groups (A.8): norm weights and all biases without decay, other weights 5e-4
    expect = {id(model.stem.weight): 5e-4, id(model.conv.weight): 5e-4, id(model.fc.weight): 5e-4,
              id(model.bn.weight): 0.0, id(model.bn.bias): 0.0, id(model.gn.weight): 0.0,
              id(model.gn.bias): 0.0, id(model.conv.bias): 0.0, id(model.fc.bias): 0.0}
    assert decay == expect
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


# --------------------------------------------------------------------------- no-aug tail

class _Switch:
    def __init__(self):
        self.on = True

    def set_strong_augmentation(self, on):
        self.on = on


class _YOLOXLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        self.l1 = False

    def set_l1_loss(self, enabled):
        self.l1 = enabled


def test_no_aug_tail_switches_data_and_model():
    sw = _Switch()
    inner = _YOLOXLike()
    model = nn.DataParallel(SlicedInference(inner))  # unwrapped like DDP, then the sliced wrapper
    hook = NoAugTail(start_iter=3, switches=[sw])
    hook.trainer = SimpleNamespace(iter=0, model=model)
    hook.before_train()
    for it in range(3):
        hook.trainer.iter = it
        hook.before_step()
        assert sw.on and not inner.l1
    hook.trainer.iter = 3
    hook.before_step()
    assert not sw.on and inner.l1 is True
    # resumed inside the tail: applied before training (before the workers start)
    sw2, m2 = _Switch(), _YOLOXLike()
    h2 = NoAugTail(start_iter=3, switches=[sw2])
    h2.trainer = SimpleNamespace(iter=5, model=m2)
    h2.before_train()
    assert not sw2.on and m2.l1
    # a model without set_l1_loss is refused in one line before training; l1_loss=False
    # leaves the model alone
    h3 = NoAugTail(0, switches=[_Switch()])
    h3.trainer = SimpleNamespace(iter=0, model=nn.Linear(1, 1))
    with pytest.raises(ConfigError, match=r"^train\.no_aug\.l1_loss=True: the model \(Linear\) has no "
                                          r"set_l1_loss\(bool\)"):
        h3.before_train()
    sw4 = _Switch()
    h4 = NoAugTail(0, switches=[sw4], l1_loss=False)
    h4.trainer = SimpleNamespace(iter=0, model=nn.Linear(1, 1))
    h4.before_train()
    assert not sw4.on
    with pytest.raises(ValueError, match="set_strong_augmentation"):
        NoAugTail(0, switches=[])
    with pytest.raises(ValueError, match="Linear"):
        NoAugTail(0, switches=[nn.Linear(1, 1)])


def _loader_cfg(dataset):
    from detectron2.data import build_detection_train_loader

    return OmegaConf.create({"train": {"no_aug": {"start_iter": 7, "l1_loss": True}},
                             "dataloader": {"train": L(build_detection_train_loader)(
                                 dataset=dataset, mapper=None, total_batch_size=1, num_workers=0)}},
                            flags={"allow_objects": True})


def test_strong_augmentation_switch_is_the_loaders_dataset():
    """The training loader's dataset node is instantiated once, handed to the hook and kept in
    the config, so the loader is built around that very object."""
    from detectron2.data import get_detection_dataset_dicts

    from sod2.data import MosaicDataset
    from sod2.data.mosaic import StrongAugmentationSwitch

    cfg = _loader_cfg(L(MosaicDataset)(dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_val"),
                                       input_size=(64, 64)))
    ds = strong_augmentation_switch(cfg)
    assert isinstance(ds, MosaicDataset) and isinstance(ds, StrongAugmentationSwitch)
    assert cfg.dataloader.train.dataset is ds
    loader = instantiate(cfg.dataloader.train)
    ds.set_strong_augmentation(False)
    assert not next(iter(loader))[0]["mosaic"]
    # a dataset that cannot switch, or no dataset node: one line naming the key
    plain = _loader_cfg(L(get_detection_dataset_dicts)(names="sod2_synthetic_val"))
    with pytest.raises(ConfigError, match=r"^train\.no_aug\.start_iter=7: dataloader\.train\.dataset \(list\) "
                                          r"has no set_strong_augmentation\(bool\)"):
        strong_augmentation_switch(plain)
    del plain.dataloader.train["dataset"]
    with pytest.raises(ConfigError, match=r"^train\.no_aug\.start_iter=7: dataloader\.train has no `dataset`"):
        strong_augmentation_switch(plain)
    old = OmegaConf.create({"train": {"no_aug": {"start_iter": 7, "model_attr": "use_l1"}}})
    with pytest.raises(ConfigError, match=r"^train\.no_aug\.model_attr: unknown key \(train\.no_aug takes "
                                          r"start_iter, l1_loss\)"):
        build_recipe_hooks(old, None, [_Switch()])


# --------------------------------------------------------------------------- multi-scale

def _batch():
    ramp = torch.arange(8, dtype=torch.float32).repeat(3, 8, 1)  # (3, 8, 8): value = x
    inst = Instances((8, 8), gt_boxes=Boxes(torch.tensor([[1.0, 2.0, 5.0, 6.0]])),
                     gt_classes=torch.tensor([1]), gt_orig_areas=torch.tensor([40.0]))
    ign = Instances((8, 8), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 2.0, 4.0]])), gt_classes=torch.tensor([-1]))
    return [{"image": ramp.to(torch.uint8), "instances": inst, "ignore_instances": ign, "height": 8, "width": 8}]


def test_resize_batch_by_hand():
    out = resize_batch(_batch(), (16, 12), (8, 8))[0]
    img = out["image"]
    assert img.shape == (3, 16, 12) and img.dtype == torch.float32
    # bilinear, align_corners=False: output column j samples x = (j + 0.5) * 8/12 - 0.5,
    # which on a ramp is the value itself (away from the clamped borders)
    for j in range(1, 11):
        assert img[0, 5, j].item() == pytest.approx((j + 0.5) * 8 / 12 - 0.5, abs=1e-5)
    assert torch.allclose(img[:, :, 3], img[:, :1, 3].expand(3, 16))  # constant along y
    assert out["instances"].gt_boxes.tensor.tolist() == [[1.5, 4.0, 7.5, 12.0]]
    assert out["instances"].image_size == (16, 12)
    assert out["instances"].gt_orig_areas.tolist() == [40.0]  # original-image areas do not change
    assert out["ignore_instances"].gt_boxes.tensor.tolist() == [[0.0, 0.0, 3.0, 8.0]]
    assert out["ignore_instances"].gt_classes.tolist() == [-1]
    assert resize_batch(_batch(), (8, 8), (8, 8))[0]["image"].dtype == torch.uint8  # same size: untouched


def test_draw_size_range_and_aspect():
    rng = np.random.RandomState(0)
    sizes = {draw_size((640, 640), (480, 800), 32, rng) for _ in range(500)}
    assert sizes == {(32 * s, 32 * s) for s in range(15, 26)}
    rng = np.random.RandomState(0)
    for _ in range(50):
        h, w = draw_size((320, 480), (320, 640), 32, rng)
        assert h % 32 == 0 and 320 <= h <= 640 and w == 32 * int(h // 32 * 1.5)


def test_multiscale_hook_resizes_batches_every_period():
    hook = MultiScaleHook(input_size=(8, 8), size_range=(32, 64), period=2)
    model = nn.Linear(1, 1)
    hook.trainer = SimpleNamespace(iter=0, data_loader=[_batch() for _ in range(6)], model=model)
    hook.before_train()
    assert hook.trainer.data_loader.data_loader is not None  # walkable by NoAugTail
    np.random.seed(0)
    shapes = []
    for it, batch in enumerate(hook.trainer.data_loader):
        hook.trainer.iter = it
        shapes.append(tuple(batch[0]["image"].shape[-2:]))
        hook.after_step()
    assert shapes[:2] == [(8, 8), (8, 8)]  # input size until the first draw
    assert shapes[2] == shapes[3] and shapes[4] == shapes[5]
    assert all(s in {(32, 32), (64, 64)} for s in shapes[2:])
    with pytest.raises(ValueError, match="multiples of 32"):
        MultiScaleHook(size_range=(500, 800))


def _rank_sizes(rank, port, queue):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    np.random.seed(100 + rank)  # different random states: only rank 0's draw may count
    hook = MultiScaleHook(input_size=(640, 640), size_range=(320, 960), period=1)
    hook.trainer = SimpleNamespace(iter=0)
    sizes = []
    for it in range(6):
        hook.trainer.iter = it
        hook.after_step()
        sizes.append(hook.size)
    queue.put((rank, sizes))
    leave(queue)


def test_multiscale_sizes_agree_across_processes():
    ctx = mp.get_context("fork")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank_sizes, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert got[0] == got[1]
    rng = np.random.RandomState(100)  # rank 0's draws
    assert got[0] == [draw_size((640, 640), (320, 960), 32, rng) for _ in range(6)]


# --------------------------------------------------------------------------- config keys

def test_recipe_config_keys():
    train = get_config("common/train.py").train
    assert train.ema.enabled is False and train.no_aug.start_iter is None and train.multiscale.enabled is False
    cfg = OmegaConf.create({"train": train})
    assert build_recipe_hooks(cfg, None) == []
    cfg.train.no_aug.start_iter = 100
    cfg.train.multiscale.enabled = True
    sw = _Switch()
    hooks = build_recipe_hooks(cfg, ema="EMA placeholder", switches=[sw])
    assert [type(h).__name__ for h in hooks] == ["EMAHook", "NoAugTail", "MultiScaleHook"]
    assert hooks[1].start_iter == 100 and hooks[1].l1_loss is True and hooks[1].switches == [sw]
    assert hooks[2].input_size == (640, 640) and hooks[2].size_range == (480, 800) and hooks[2].period == 10


def test_mosaic_dataloader_from_lazyconfig():
    """The documented config: MosaicDataset as the dataset, no mapper."""
    from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts

    from sod2.data import MosaicDataset

    cfg = L(build_detection_train_loader)(
        dataset=L(MosaicDataset)(dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_val"),
                                 input_size=(128, 128), ignore_fill="mean"),
        mapper=None, total_batch_size=2, num_workers=0)
    batch = next(iter(instantiate(cfg)))
    assert len(batch) == 2 and all(d["image"].shape == (3, 128, 128) for d in batch)
    assert all({"instances", "ignore_instances"} <= set(d) for d in batch)


def test_recipe_in_lazy_trainer(tmp_path, monkeypatch):
    """Faster R-CNN trained by sod2's trainer with the whole recipe: Mosaic data, no-aug tail
    from iteration 2, multi-scale batches, EMA; the hooks run and the tail reaches the data."""
    from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
    from detectron2.engine import default_argument_parser

    import sod2.engine.lazy_train as lt
    from sod2.data import MosaicDataset

    config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "baselines",
                          "faster_rcnn_R18s_fpn_synthetic.py")
    args = default_argument_parser().parse_args(
        ["--config-file", config, "train.device=cpu", "train.max_iter=4", "train.eval_period=0",
         "train.checkpointer.period=100", f"train.output_dir={tmp_path}", "train.seed=0",
         "train.ema.enabled=True", "train.no_aug.start_iter=2", "train.no_aug.l1_loss=False",
         "train.multiscale.enabled=True", "train.multiscale.input_size=[128,128]",
         "train.multiscale.size_range=[96,160]", "train.multiscale.period=1",
         "lr_multiplier.scheduler.milestones=[2,3]", "lr_multiplier.scheduler.num_updates=4"])
    cfg = lt.setup(args)
    cfg.dataloader.train = L(build_detection_train_loader)(
        dataset=L(MosaicDataset)(dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_val"),
                                 input_size=(128, 128)),
        mapper=None, total_batch_size=1, num_workers=0)
    monkeypatch.setattr(lt, "do_test", lambda cfg, model: {})
    seen = []  # (iteration, mosaic, image size) of each batch the model receives
    real_apply = MultiScaleHook.apply

    def recording_apply(self, batch):
        out = real_apply(self, batch)
        seen.append((self.trainer.iter, out[0]["mosaic"], tuple(out[0]["image"].shape[-2:])))
        return out

    monkeypatch.setattr(MultiScaleHook, "apply", recording_apply)
    lt.do_train(args, cfg)
    assert [s[0] for s in seen] == [0, 1, 2, 3]
    assert [s[1] for s in seen] == [True, True, False, False]  # num_workers=0: no prefetch lag
    assert seen[0][2] == (128, 128) and all(h % 32 == 0 and 96 <= h <= 160 for _, _, (h, w) in seen)
    final = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert final["ema"]["updates"] == 4
