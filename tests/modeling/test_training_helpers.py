"""sod2.modeling.training: EventStorage access that is a no-op outside a trainer, and the
DDP zero-dependency term (value exactly 0, gradient exactly 0 for every trainable parameter,
none for frozen ones); and the CFINet/YOLOX training forward outside a trainer, which the
unguarded ``get_event_storage()`` calls refused before."""
import math

import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage
from torch import nn

from sod2.config import get_config
from sod2.modeling.training import current_storage, put_scalars, zero_dependency


def test_put_scalars_outside_and_inside_a_storage():
    assert current_storage() is None
    put_scalars(**{"a/b": 1.0}, c=2)  # no trainer: nothing, no error
    with EventStorage(0) as outer:
        assert current_storage() is outer
        put_scalars(**{"a/b": 1.5}, c=torch.tensor(2.0))
        put_scalars(d=3, smoothing_hint=False)
        with EventStorage(0) as inner:  # the innermost one receives
            put_scalars(e=4.0)
        assert current_storage() is outer
    assert outer.latest()["a/b"][0] == 1.5 and outer.latest()["c"][0] == 2.0 and outer.latest()["d"][0] == 3.0
    assert outer.smoothing_hints() == {"a/b": True, "c": True, "d": False}
    assert "e" not in outer.latest() and inner.latest()["e"][0] == 4.0
    assert current_storage() is None


def test_zero_dependency_value_and_gradients():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    b[0].weight.requires_grad_(False)  # frozen
    shared = nn.ModuleList([a])  # a's parameters reached twice: counted once
    with torch.no_grad():
        a.weight.mul_(1e3)  # large values: the term is still exactly 0
    z = zero_dependency(a, b, shared)
    assert z.shape == () and z.item() == 0.0 and z.requires_grad
    loss = torch.tensor(1.25, requires_grad=True)
    total = loss + z
    assert total.item() == 1.25  # the loss's value is unchanged, bit for bit
    total.backward()
    trainable = [a.weight, a.bias, b[0].bias, b[1].weight, b[1].bias]
    assert all(p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)) for p in trainable)
    assert b[0].weight.grad is None
    assert loss.grad.item() == 1.0


def test_zero_dependency_without_trainable_parameters():
    frozen = nn.Linear(2, 2).requires_grad_(False)
    z = zero_dependency(frozen, nn.Identity())
    assert z.shape == () and z.item() == 0.0 and not z.requires_grad


def test_zero_dependency_of_a_non_finite_parameter_is_nan():
    m = nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(float("inf"))
    assert math.isnan(zero_dependency(m).item())  # a broken model is not hidden by the term


def _synthetic_batch(cfg, n=1):
    cfg.dataloader.train.total_batch_size = n
    cfg.dataloader.train.num_workers = 0
    return next(iter(instantiate(cfg.dataloader.train)))


@pytest.mark.parametrize("config,logged", [
    ("cfinet/cfinet_R18s_fpn_synthetic.py", ("crpn/num_pos_stage1", "crpn/num_pos_stage2", "imitation/hq_found",
                                             "imitation/anchors", "imitation/bank_fill/0")),
    ("srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py", ("srtod/threshold",)),
])
def test_branch_statistics_reach_the_trainers_storage(config, logged):
    """Config -> model -> one training forward inside an EventStorage: each method's
    statistics arrive through put_scalars (YOLOX: the test below)."""
    cfg = get_config(config)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    with EventStorage(0) as storage:
        losses = model(_synthetic_batch(cfg))
    assert all(torch.isfinite(v) for v in losses.values())
    for name in logged:
        assert name in storage.latest() and math.isfinite(storage.latest()[name][0]), name


def test_yolox_training_forward_outside_a_trainer():
    """A YOLOX + Foreground Probing training forward outside any EventStorage (a notebook, a
    test) gives the losses it gives inside one; before, ``fgprobe/lambda`` raised an
    AssertionError there. (R-CNN models need a storage anyway: Detectron2's ROI heads log.)"""
    cfg = get_config("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py")
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    batch = _synthetic_batch(cfg)  # one 256 x 256 Mosaic image
    outside = model(batch)
    with EventStorage(0) as storage:
        inside = model(batch)
    assert set(outside) == set(inside) and "loss_ref" in inside
    for k in inside:
        assert torch.equal(outside[k], inside[k]), k
    for name in ("fgprobe/lambda", "yolox/num_fg_per_gt"):
        assert name in storage.latest() and math.isfinite(storage.latest()[name][0]), name
