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

from sod2.layers import iou_loss
from sod2.modeling.methods.cfinet import adaptive_conv_offsets
from sod2.modeling.methods.cfinet.adaptive_conv import AdaptiveConv, deform_conv_sampled
from sod2.modeling.matchers import MaxIoUMatcher
from sod2.modeling.methods.cfinet import DynamicIoUAssigner, dynamic_iou_threshold
from sod2.modeling.methods.cfinet import CRPN, CRPNHead

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


# ---------------------------------------------------------------- independent recomputation
def _naive_anchors(strides, H, W):
    """One square anchor (side 2 x stride) per location, row-major per level."""
    out = []
    for s in strides:
        for i in range(H // s):
            for j in range(W // s):
                out.append([j * s - s, i * s - s, j * s + s, i * s + s])
    return out


def _naive_decode(box, d, stds):
    """MMDetection's delta2bbox (means 0) for one box."""
    pw, ph = box[2] - box[0], box[3] - box[1]
    px, py = box[0] + 0.5 * pw, box[1] + 0.5 * ph
    gx, gy = px + pw * d[0] * stds[0], py + ph * d[1] * stds[1]
    gw, gh = pw * math.exp(d[2] * stds[2]), ph * math.exp(d[3] * stds[3])
    return [gx - 0.5 * gw, gy - 0.5 * gh, gx + 0.5 * gw, gy + 0.5 * gh]


def _naive_iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _bce(logit, y):
    p = 1 / (1 + math.exp(-logit))
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_crpn_losses_equal_an_independent_recomputation():
    """All three weighted loss values against a loop implementation of the official rules:
    anchors, MMDet delta decoding, clipping, IoU, the dynamic threshold on the ORIGINAL sizes,
    the stage-2 max-IoU rule with low-quality matches, the normalisers (anchors / 200; the
    sampled anchors) and the weights 9 / 0.9 / 9. Images are small enough (80 anchors) that
    every labelled anchor is sampled, so nothing is random."""
    torch.manual_seed(3)
    C, strides = 8, (4, 8)
    crpn = _crpn(C)
    with torch.no_grad():  # visible deltas and logits
        for m in (crpn.head.s1_reg, crpn.head.s2_reg, crpn.head.s2_cls):
            m.weight.normal_(0, 0.3)
            m.bias.normal_(0, 0.3)
    sizes = [(32, 32), (28, 30)]
    images = ImageList(torch.zeros(2, 3, 32, 32), sizes)
    feats = {"p2": torch.randn(2, C, 8, 8), "p3": torch.randn(2, C, 4, 4)}
    gt_lists = [[[4.0, 4.0, 12.0, 12.0], [8.0, 0.0, 24.0, 16.0], [17.0, 18.0, 31.0, 30.0]],
                [[2.0, 3.0, 9.0, 12.0], [12.0, 6.0, 28.0, 22.0]]]
    # the data were resized x2: original areas are a quarter of the boxes' (a 16 px box was 8 px)
    gts = [Instances(sz, gt_boxes=Boxes(torch.tensor(g)), gt_classes=torch.zeros(len(g), dtype=torch.int64),
                     gt_orig_areas=torch.tensor([(b[2] - b[0]) * (b[3] - b[1]) / 4 for b in g]))
           for sz, g in zip(sizes, gt_lists)]
    crpn.train()
    with EventStorage(0):
        _, losses = crpn(images, feats, gts)

    anchors = _naive_anchors(strides, 32, 32)
    A, N = len(anchors), 2
    assert A == 80
    # the head's raw outputs (its layers are not under test), flattened row-major per level
    with torch.no_grad():
        y, d1 = zip(*[crpn.head.stage1(feats[f]) for f in ("p2", "p3")])
        flat = lambda t: t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, t.shape[1])  # noqa: E731
        d1 = torch.cat([flat(t) for t in d1], 1).tolist()
    s1_sum, cls_sum, s2_sum, n_sampled = 0.0, 0.0, 0.0, 0
    for n in range(N):
        h, w = sizes[n]
        g = gt_lists[n]
        orig = [math.sqrt((b[2] - b[0]) * (b[3] - b[1]) / 4) for b in g]
        thr = [max(0.25, 0.20 + 0.15 * math.log2(s / 12)) for s in orig]
        refined = []
        for a, d in zip(anchors, d1[n]):
            b = _naive_decode(a, d, (0.1, 0.1, 0.5, 0.5))
            refined.append([min(max(b[0], 0), w), min(max(b[1], 0), h), min(max(b[2], 0), w),
                            min(max(b[3], 0), h)])
            ious = [_naive_iou(a, gb) for gb in g]
            best = max(range(len(g)), key=lambda k: (ious[k], -k))
            if ious[best] >= thr[best]:  # stage-1 positive: IoU loss of the decoded box
                s1_sum += 1 - max(_naive_iou(b, g[best]), 1e-6)
        # stage 2 from the refined boxes (the adaptive conv reads them)
        with torch.no_grad():
            rb = torch.tensor(refined)
            outs = [crpn.head.stage2(y[k][n:n + 1], rb[None, sl], s)
                    for k, (sl, s) in enumerate(((slice(0, 64), 4.0), (slice(64, 80), 8.0)))]
            logit2 = torch.cat([flat(c)[0, :, 0] for c, _ in outs]).tolist()
            d2 = torch.cat([flat(d)[0] for _, d in outs]).tolist()
        iou2 = [[_naive_iou(b, gb) for gb in g] for b in refined]
        assigned = [None] * A
        for k in range(A):
            best = max(range(len(g)), key=lambda j: (iou2[k][j], -j))
            assigned[k] = best if iou2[k][best] >= 0.7 else -1
        for j in range(len(g)):  # each ground truth takes its best boxes (>= 0.3), later gt wins
            m = max(iou2[k][j] for k in range(A))
            if m >= 0.3:
                for k in range(A):
                    if iou2[k][j] == m:
                        assigned[k] = j
        for k in range(A):
            label = 1.0 if assigned[k] >= 0 else 0.0
            cls_sum += _bce(logit2[k], label)
            n_sampled += 1
            if assigned[k] >= 0:
                b = _naive_decode(refined[k], d2[k], (0.05, 0.05, 0.1, 0.1))
                s2_sum += 1 - max(_naive_iou(b, g[assigned[k]]), 1e-6)
    assert s1_sum > 0 and s2_sum > 0
    assert losses["loss_crpn_reg_s1"].item() == pytest.approx(9.0 * s1_sum / (N * A / 200), rel=1e-5)
    assert losses["loss_crpn_cls"].item() == pytest.approx(0.9 * cls_sum / n_sampled, rel=1e-5)
    assert losses["loss_crpn_reg_s2"].item() == pytest.approx(9.0 * s2_sum / n_sampled, rel=1e-5)


def test_dynamic_threshold_uses_original_sizes_through_the_config_mapper(tmp_path):
    """dataset dict -> the SODA-D CFINet config's mapper (x1.5 resize to 1200) -> the config's
    CRPN: the assigner sees the sizes in ORIGINAL pixels (12 px -> threshold 0.25, 32 px ->
    0.41), not the resized ones (18 px -> 0.288, 48 px -> 0.50)."""
    import cv2
    import numpy as np
    from detectron2.config import instantiate
    from detectron2.structures import BoxMode

    from sod2.config import get_config

    cfg = get_config("cfinet/cfinet_R50_fpn_sodad_1x.py")
    path = tmp_path / "patch.png"
    cv2.imwrite(str(path), np.zeros((800, 800, 3), np.uint8))
    record = {"file_name": str(path), "height": 800, "width": 800, "image_id": 0, "annotations": [
        {"bbox": [100.0, 100.0, 12.0, 12.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
        {"bbox": [300.0, 300.0, 32.0, 32.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1}]}
    mapped = instantiate(cfg.dataloader.train.mapper)(record)
    inst = mapped["instances"]
    assert tuple(mapped["image"].shape[1:]) == (1200, 1200)
    assert inst.gt_boxes.area().tolist() == pytest.approx([18.0 ** 2, 48.0 ** 2])

    cfg.model.cfinet.crpn.head.in_channels = 8  # a narrow head: the assignment is under test
    crpn = instantiate(cfg.model.cfinet.crpn)
    seen = []
    assigner = crpn.stage1_assigner

    class Spy:
        def __call__(self, iou, sizes):
            seen.append(dynamic_iou_threshold(sizes, assigner.base_size, assigner.gamma, assigner.rule))
            return assigner(iou, sizes)

    crpn.stage1_assigner = Spy()
    images = ImageList(mapped["image"][None].float(), [(1200, 1200)])
    feats = {f"p{k}": torch.randn(1, 8, 1200 // 2 ** k, 1200 // 2 ** k) for k in (2, 3, 4, 5)}
    crpn.train()
    with EventStorage(0):
        crpn(images, feats, [inst])
    assert seen[0].tolist() == pytest.approx([0.25, 0.20 + 0.15 * math.log2(32 / 12)], abs=1e-6)
