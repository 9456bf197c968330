"""CRPN: the dynamic IoU threshold, the adaptive convolution, the stage-2 matcher, the
IoU loss, and the proposal generator in training and inference."""
import math

import pytest
import torch
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import deform_conv2d

from sod2.layers import adaptive_conv_offsets, iou_loss
from sod2.layers.adaptive_conv import AdaptiveConv, deform_conv_sampled
from sod2.modeling.matchers import DynamicIoUAssigner, MaxIoUMatcher, dynamic_iou_threshold
from sod2.modeling.proposal_generator import CRPN, CRPNHead

SIZES = torch.tensor([3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0])


def test_dynamic_threshold_table():
    # paper (Eq. 1, log2): max(0.25, 0.20 + 0.15 * log2(s / 12)), by hand
    paper = [0.25, 0.25, 0.25, 0.35, 0.50, 0.65, 0.80]
    assert dynamic_iou_threshold(SIZES, rule="paper").tolist() == pytest.approx(paper)
    # official code: clip(0.25 + 0.15 * log2(s / 12), 0.2, 0.7), accepted also at >= 0.25
    code = [0.20, 0.20, 0.25, 0.25, 0.25, 0.25, 0.25]
    assert dynamic_iou_threshold(SIZES, rule="code").tolist() == pytest.approx(code)
    # base size and gamma are parameters: s = 32 with base 16, gamma 0.1 -> 0.20 + 0.1 = 0.30
    assert dynamic_iou_threshold(torch.tensor([32.0]), base_size=16, gamma=0.1).item() == pytest.approx(0.30)
    with pytest.raises(ValueError):
        dynamic_iou_threshold(SIZES, rule="other")


def test_dynamic_assigner():
    iou = torch.tensor([[0.30, 0.26, 0.10, 0.00],
                        [0.00, 0.30, 0.40, 0.12]])
    sizes = torch.tensor([12.0, 48.0])  # thresholds 0.25 and 0.50 (paper)
    m, lab = DynamicIoUAssigner(rule="paper")(iou, sizes)
    # anchor 1's best is gt1 (0.30) but gt1 needs 0.50: not positive; no low-quality rescue
    assert lab.tolist() == [1, -1, -1, 0] and m[0] == 0
    m, lab = DynamicIoUAssigner(rule="code")(iou, sizes)
    assert lab.tolist() == [1, 1, 1, 0] and m.tolist()[:3] == [0, 1, 1]
    m, lab = DynamicIoUAssigner()(torch.zeros(0, 4), torch.zeros(0))
    assert lab.tolist() == [0, 0, 0, 0]


def test_max_iou_matcher_low_quality_needs_min_iou():
    iou = torch.tensor([[0.80, 0.50, 0.10, 0.00],
                        [0.00, 0.55, 0.20, 0.25]])
    m, lab = MaxIoUMatcher(pos_thresh=0.7, neg_thresh=0.7, min_pos_iou=0.3)(iou)
    # pred 0 >= 0.7; pred 1 is gt1's best (0.55 >= 0.3) and is matched to gt1 (not gt0's 0.5)
    assert lab.tolist() == [1, 1, 0, 0] and m.tolist()[:2] == [0, 1]
    iou2 = torch.tensor([[0.25, 0.25, 0.1]])  # best IoU below 0.3: no positive at all
    assert MaxIoUMatcher()(iou2)[1].tolist() == [0, 0, 0]
    tie = torch.tensor([[0.5, 0.5, 0.1]])
    assert MaxIoUMatcher()(tie)[1].tolist() == [1, 1, 0]
    assert MaxIoUMatcher(assign_all_ties=False)(tie)[1].tolist() == [1, 0, 0]


def test_iou_loss_by_hand():
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    gt = torch.tensor([[1.0, 0.0, 3.0, 2.0], [2.0, 2.0, 3.0, 3.0]])
    # IoU 2/6 and 0 (clamped to 1e-6)
    assert iou_loss(pred, gt, reduction="none").tolist() == pytest.approx([1 - 1 / 3, 1 - 1e-6])


def _ramp(H, W):
    """A map whose value at (y, x) is x + 1000 y: bilinear samples reveal positions."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    return (xs + 1000 * ys)[None, None]


@pytest.mark.parametrize("conv", ["torchvision", "sampled"])
def test_adaptive_offsets_put_taps_on_the_box(conv):
    H, W, s = 12, 14, 8.0
    # one box per location; check a few locations numerically
    boxes = torch.zeros(1, H * W, 4, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    cx = torch.rand(H * W, generator=gen, dtype=torch.float64) * (W - 4) * s + 2 * s
    cy = torch.rand(H * W, generator=gen, dtype=torch.float64) * (H - 4) * s + 2 * s
    bw = 4 + torch.rand(H * W, generator=gen, dtype=torch.float64) * 20
    bh = 4 + torch.rand(H * W, generator=gen, dtype=torch.float64) * 20
    boxes[0] = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
    off = adaptive_conv_offsets(boxes, s, H, W)
    assert off.shape == (1, 18, H, W)
    # 9 output channels, each picking one tap (one-hot kernels)
    weight = torch.zeros(9, 1, 3, 3, dtype=torch.float64)
    for k in range(9):
        weight[k, 0, k // 3, k % 3] = 1
    x = _ramp(H, W)
    out = deform_conv2d(x, off, weight, padding=(1, 1)) if conv == "torchvision" else \
        deform_conv_sampled(x, off, weight)
    for loc in (0, 17, 60, H * W - 1):
        i, j = divmod(loc, W)
        for k in range(9):
            dy, dx = k // 3 - 1, k % 3 - 1
            # centre (0, 0), edge midpoints (one of dy, dx zero), corners (both non-zero)
            py = (cy[loc] + dy * bh[loc] / 2) / s
            px = (cx[loc] + dx * bw[loc] / 2) / s
            if 0 <= py <= H - 1 and 0 <= px <= W - 1:  # inside the map: bilinear is exact on a ramp
                assert out[0, k, i, j].item() == pytest.approx(px + 1000 * py, abs=1e-6), (loc, k)


def test_sampled_deform_conv_equals_torchvision():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 9, 11, generator=g, requires_grad=True)
    off = torch.randn(2, 18, 9, 11, generator=g) * 4  # many taps fall outside the map
    w = (torch.randn(3, 5, 3, 3, generator=g) * 0.2).requires_grad_()
    a = deform_conv2d(x, off, w, padding=(1, 1))
    b = deform_conv_sampled(x, off, w)
    assert torch.allclose(a, b, atol=1e-5)
    ga = torch.autograd.grad(a.square().sum(), [x, w])
    gb = torch.autograd.grad(b.square().sum(), [x, w])
    assert all(torch.allclose(p, q, atol=1e-3, rtol=1e-4) for p, q in zip(ga, gb))


def _crpn(C=16):
    return CRPN(
        in_features=["p2", "p3"], head=CRPNHead(C),
        anchor_generator=DefaultAnchorGenerator(sizes=[[8], [16]], aspect_ratios=[1.0],
                                                strides=[4, 8], offset=0.0),
        stage1_assigner=DynamicIoUAssigner(), stage2_matcher=MaxIoUMatcher(),
        stage1_box2box=Box2BoxTransform((10.0, 10.0, 2.0, 2.0)),
        stage2_box2box=Box2BoxTransform((20.0, 20.0, 10.0, 10.0)),
        pre_nms_topk=(50, 40), post_nms_topk=(20, 10))


def test_crpn_train_and_inference_with_and_without_gt():
    torch.manual_seed(0)
    C = 16
    crpn = _crpn(C)
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 56)])
    feats = {"p2": torch.randn(2, C, 16, 16, requires_grad=True), "p3": torch.randn(2, C, 8, 8)}
    gts = [Instances((64, 64), gt_boxes=Boxes(torch.tensor([[10.0, 10.0, 22.0, 24.0], [30, 5, 36, 11]])),
                     gt_classes=torch.tensor([0, 1]), gt_orig_areas=torch.tensor([168.0, 36.0])),
           Instances((60, 56), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))]
    crpn.train()
    with EventStorage(0) as st:
        props, losses = crpn(images, feats, gts)
        assert set(losses) == {"loss_crpn_reg_s1", "loss_crpn_cls", "loss_crpn_reg_s2"}
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert feats["p2"].grad is not None and crpn.head.s2_conv.conv.weight.grad.abs().sum() > 0
        assert st.latest()["crpn/num_pos_stage1"][0] > 0
    assert len(props) == 2 and len(props[0]) <= 20
    assert (props[1].proposal_boxes.tensor[:, 2] <= 56).all()  # clipped to the image
    crpn.eval()
    with torch.no_grad():
        props, losses = crpn(images, feats)
    assert losses == {} and len(props[0]) <= 10 and props[0].has("objectness_logits")


def test_adaptive_conv_module_matches_reference():
    torch.manual_seed(0)
    m = AdaptiveConv(4, 6)
    x = torch.randn(1, 4, 5, 7)
    boxes = torch.rand(1, 35, 2) * 20
    boxes = torch.cat([boxes, boxes + 5 + torch.rand(1, 35, 2) * 10], dim=2)
    ref = torch.relu(deform_conv2d(x, adaptive_conv_offsets(boxes, 4.0, 5, 7), m.conv.weight, padding=(1, 1)))
    assert torch.allclose(m(x, boxes, 4.0), ref, atol=1e-5)
    assert math.isclose(float(m.conv.weight.detach().std()), 0.01, rel_tol=0.2)
