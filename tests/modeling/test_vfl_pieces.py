"""RT-DETR's varifocal-loss pieces (baseline): the epsilon-free box IoU/GIoU
(sod2/layers/losses.py ``aligned_iou_giou``), VFL's IoU class target
(sod2/modeling/criterion ``IoUTarget``) and ``varifocal_loss``, against hand values,
torchvision and naive loops written here."""
import math

import pytest
import torch
import torchvision

from sod2.layers.losses import aligned_iou_giou, varifocal_loss
from sod2.modeling.criterion import IoUTarget


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ----------------------------------------------------------------- box ops
def test_aligned_iou_giou_hand_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    iou, giou = aligned_iou_giou(a, b)
    # overlap 1, union 7, enclosing 9; disjoint: union 2, enclosing 3; two empty boxes: 0, not nan
    assert iou.tolist() == pytest.approx([1 / 7, 0.0, 0.0])
    assert giou.tolist() == pytest.approx([1 / 7 - 2 / 9, -1 / 3, 0.0])


def test_aligned_iou_giou_vs_torchvision_pairwise():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64)
    a = torch.cat([xy, xy + 0.01 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 0.3], 1)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64)
    b = torch.cat([xy, xy + 0.001 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 0.3], 1)
    iou, giou = aligned_iou_giou(a, b)
    assert torch.allclose(iou, torchvision.ops.box_iou(a, b).diag(), rtol=0, atol=1e-12)
    assert torch.allclose(giou, torchvision.ops.generalized_box_iou(a, b).diag(), rtol=0, atol=1e-12)


def test_aligned_iou_exact_for_tiny_boxes():
    # a 1x1 pixel box at 640 against itself shifted by half a pixel: IoU 1/3 exactly (no eps)
    s = 1.0 / 640
    a = torch.tensor([[0.5, 0.5, 0.5 + s, 0.5 + s]], dtype=torch.float64)
    b = a + torch.tensor([[s / 2, 0.0, s / 2, 0.0]], dtype=torch.float64)
    iou, _ = aligned_iou_giou(a, b)
    assert iou.item() == pytest.approx(1 / 3, rel=1e-12)


def test_iou_target_hand_value_and_detached():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1]], requires_grad=True)
    gt = torch.tensor([[0.55, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]])
    t = IoUTarget()(pred, gt)
    # overlap 0.15 x 0.2 = 0.03, union 0.08 - 0.03 = 0.05; disjoint: 0
    assert t.tolist() == pytest.approx([0.6, 0.0], abs=1e-6)
    assert not t.requires_grad


# ----------------------------------------------------------------- varifocal
def test_varifocal_loss_vs_naive():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    target = torch.zeros(2, 3, 4, dtype=torch.float64)
    positive = torch.zeros(2, 3, 4, dtype=torch.bool)
    target[0, 1, 2], positive[0, 1, 2] = 0.7, True
    target[1, 0, 0], positive[1, 0, 0] = 0.3, True
    positive[1, 2, 3] = True  # a matched query with IoU 0: weight 0 on its class (RT-DETR)
    alpha, gamma = 0.6, 1.5

    def naive(pos_mask, pos_weight=None):
        total = 0.0
        for idx in torch.cartesian_prod(torch.arange(2), torch.arange(3), torch.arange(4)).tolist():
            x, t = logits[tuple(idx)].item(), target[tuple(idx)].item()
            p = sigmoid(x)
            bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
            if pos_mask[tuple(idx)]:
                w = t if pos_weight is None else pos_weight[tuple(idx)].item()
            else:
                w = alpha * p ** gamma
            total += w * bce
        return total

    assert varifocal_loss(logits, target, alpha, gamma, positive=positive).item() == pytest.approx(
        naive(positive), rel=1e-10)
    # default positive mask: target > 0 -> the IoU-0 query's class channel becomes a negative
    assert varifocal_loss(logits, target, alpha, gamma).item() == pytest.approx(naive(target > 0), rel=1e-10)
    assert varifocal_loss(logits, target, alpha, gamma).item() != pytest.approx(naive(positive), rel=1e-6)
    pw = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    assert varifocal_loss(logits, target, alpha, gamma, positive=positive, positive_weight=pw).item() == \
        pytest.approx(naive(positive, pw), rel=1e-10)
    elem = varifocal_loss(logits, target, alpha, gamma, positive=positive, reduction="none")
    assert elem.shape == logits.shape and elem.sum().item() == pytest.approx(naive(positive), rel=1e-10)
    # the negative weight is detached: the gradient is p^gamma * alpha * (p - 0) only
    x = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    varifocal_loss(x, torch.zeros(1, dtype=torch.float64), alpha, gamma).backward()
    assert x.grad.item() == pytest.approx(alpha * sigmoid(0.3) ** gamma * sigmoid(0.3), rel=1e-10)
