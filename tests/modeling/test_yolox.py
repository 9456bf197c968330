"""YOLOX in sod2: blocks, backbone and neck shapes, the reference parameter counts, SimOTA,
the IoU losses, the loss normalisation, the meta-architecture, the configs and the
checkpoint converter. Expected values are computed by hand or by naive loops here."""
import json
import math
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torch import nn

from sod2.config import get_config
from sod2.layers import BaseConv, Bottleneck, Focus, SPPBottleneck
from sod2.layers.losses import box_iou_loss
from sod2.modeling.assigners import SimOTAAssigner, SimOTAResult
from sod2.modeling.backbone import CSPDarknet, YOLOPAFPN, pafpn_output_shape
from sod2.modeling.heads import SOD2_HEAD_REGISTRY, YOLOXHead
from sod2.modeling.meta_arch import YOLOX, YOLOXPredictions
from sod2.modeling.meta_arch.yolox import YOLOXStep
from sod2.utils.convert import ConversionError, convert_yolox_state_dict

from ..modules import tool_module

REPO = Path(__file__).resolve().parents[2]
REF_KEYS = REPO / "tests" / "fixtures" / "reference-keys"
# trainable parameters of the official models with 80 classes (Megvii-BaseDetection/YOLOX
# README: 0.91 M / 5.06 M / 9.0 M / 25.3 M / 54.2 M / 99.1 M; exact counts of its code)
REFERENCE_PARAMS = {"nano": 912159, "tiny": 5055855, "s": 8968255, "m": 25326495, "l": 54208895,
                    "x": 99071455}
SIZES = {"nano": (0.33, 0.25, True), "tiny": (0.33, 0.375, False), "s": (0.33, 0.50, False),
         "m": (0.67, 0.75, False), "l": (1.0, 1.0, False), "x": (1.33, 1.25, False)}


def build_yolox(depth=0.33, width=0.125, depthwise=False, num_classes=80, in_features=("dark3", "dark4", "dark5"),
                arch=YOLOX, **kwargs):
    """A YOLOX (or a method's subclass ``arch``) of the given size, PyTorch's default init."""
    backbone = YOLOPAFPN(CSPDarknet(depth, width, depthwise, out_features=in_features), in_features,
                         depth=depth, depthwise=depthwise)
    head = YOLOXHead(pafpn_output_shape(in_features, width), num_classes, int(256 * width), depthwise)
    return arch(backbone=backbone, head=head, assigner=SimOTAAssigner(), num_classes=num_classes, **kwargs)


def bce_logit(x, t):
    """BCE with logits, written out."""
    s = 1.0 / (1.0 + math.exp(-x))
    return -(t * math.log(s) + (1 - t) * math.log(1 - s))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------- blocks
def test_baseconv_bn_and_focus_phase_order():
    conv = BaseConv(3, 4, 3, 2)
    assert conv.bn.eps == 1e-3 and conv.bn.momentum == 0.03 and conv.conv.bias is None
    assert conv.conv.padding == (1, 1) and conv(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 4, 4)
    focus = Focus(2, 8, ksize=3)
    focus.conv = nn.Identity()
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(1, 2, 4, 6)
    y = focus(x)
    assert y.shape == (1, 8, 2, 3)
    phases = [(0, 0), (1, 0), (0, 1), (1, 1)]  # (dy, dx): top-left, bottom-left, top-right, bottom-right
    for p, (dy, dx) in enumerate(phases):
        for c in range(2):
            for i in range(2):
                for j in range(3):
                    assert y[0, p * 2 + c, i, j] == x[0, c, 2 * i + dy, 2 * j + dx]


def test_bottleneck_shortcut_and_spp():
    assert Bottleneck(8, 8, shortcut=True).use_add and not Bottleneck(8, 16, shortcut=True).use_add
    assert not Bottleneck(8, 8, shortcut=False).use_add
    spp = SPPBottleneck(16, 12)
    assert [p.kernel_size for p in spp.pools] == [5, 9, 13]
    assert spp.conv2.conv.in_channels == 4 * 8 and spp(torch.zeros(1, 16, 5, 7)).shape == (1, 12, 5, 7)


# ------------------------------------------------------- backbone, neck, sizes
def test_cspdarknet_and_pafpn_shapes():
    bb = CSPDarknet(0.33, 0.25, out_features=("dark2", "dark3", "dark4", "dark5"))
    x = torch.zeros(1, 3, 64, 96)
    feats = bb(x)
    expect = {"dark2": (32, 4), "dark3": (64, 8), "dark4": (128, 16), "dark5": (256, 32)}
    for k, (c, s) in expect.items():
        assert feats[k].shape == (1, c, 64 // s, 96 // s)
        assert bb.output_shape()[k].channels == c and bb.output_shape()[k].stride == s
    frozen = CSPDarknet(0.33, 0.25, freeze_at=2)  # stem and dark2: no gradient, frozen BN
    assert not any(p.requires_grad for p in frozen.dark2.parameters())
    assert all(p.requires_grad for p in frozen.dark3.parameters())
    assert type(frozen.dark2[0].bn).__name__ == "FrozenBatchNorm2d"
    neck = YOLOPAFPN(CSPDarknet(0.33, 0.25), depth=0.33)
    out = neck(x)
    assert list(out) == ["p3", "p4", "p5"] and neck.size_divisibility == 32
    for k, c, s in [("p3", 64, 8), ("p4", 128, 16), ("p5", 256, 32)]:
        assert out[k].shape == (1, c, 64 // s, 96 // s)
    assert neck.output_shape() == pafpn_output_shape(width=0.25)
    # one value adds p2 (stride 4)
    p2 = YOLOPAFPN(CSPDarknet(0.33, 0.25, out_features=("dark2", "dark3", "dark4", "dark5")),
                   in_features=("dark2", "dark3", "dark4", "dark5"), depth=0.33)
    out = p2(x)
    assert list(out) == ["p2", "p3", "p4", "p5"] and out["p2"].shape == (1, 32, 16, 24)
    assert p2.output_shape() == pafpn_output_shape(("dark2", "dark3", "dark4", "dark5"), 0.25)
    # the 3-level parameters keep their names and shapes: a COCO checkpoint loads into p2
    sd3 = {k: v.shape for k, v in neck.state_dict().items()}
    sd4 = {k: v.shape for k, v in p2.state_dict().items()}
    assert all(sd4.get(k) == s for k, s in sd3.items())
    assert all(".p2." in k or "bu_blocks.p3." in k or "reduce_convs.p3." in k for k in set(sd4) - set(sd3))
    with pytest.raises(ValueError, match="dark2"):
        YOLOPAFPN(CSPDarknet(0.33, 0.25), in_features=("dark2", "dark3", "dark4", "dark5"))


@pytest.mark.parametrize("size", sorted(SIZES))
def test_reference_parameter_counts(size):
    depth, width, depthwise = SIZES[size]
    with torch.device("meta"):
        model = build_yolox(depth, width, depthwise)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == REFERENCE_PARAMS[size]


def test_head_structure_and_bias_init():
    assert SOD2_HEAD_REGISTRY.get("YOLOXHead") is YOLOXHead
    head = YOLOXHead(pafpn_output_shape(width=0.125), num_classes=3, feat_channels=32)
    prior = -math.log(0.99 / 0.01)
    for f in ("p3", "p4", "p5"):
        assert torch.allclose(head.cls_preds[f].bias, torch.full((3,), prior))
        assert torch.allclose(head.obj_preds[f].bias, torch.full((1,), prior))
        assert all(m.eps == 1e-3 and m.momentum == 0.03 for m in head.modules() if isinstance(m, nn.BatchNorm2d))
    feats = [torch.randn(2, c, 8 // 2 ** i, 6 // 2 ** i) for i, c in enumerate((32, 64, 128))]
    cls_f, reg_f = head.forward_features(feats)
    out = head(feats)  # forward = forward_features then predict, in one YOLOXHeadOutput
    assert all(torch.equal(a, b) for a, b in zip(out.cls_feats + out.reg_feats, cls_f + reg_f))
    assert all(torch.equal(a, b) for a, b in zip(out.cls_logits + out.reg + out.obj_logits,
                                                 sum(head.predict(cls_f, reg_f), [])))
    assert [t.shape for t in cls_f] == [(2, 32, 8, 6), (2, 32, 4, 3), (2, 32, 2, 1)]
    cls, reg, obj = head.predict(cls_f, reg_f)
    assert cls[0].shape == (2, 3, 8, 6) and reg[1].shape == (2, 4, 4, 3) and obj[2].shape == (2, 1, 2, 1)
    # obj and reg come from the reg branch, cls from the cls branch
    cls2, reg2, obj2 = head.predict([t + 1 for t in cls_f], reg_f)
    assert torch.equal(reg2[0], reg[0]) and torch.equal(obj2[0], obj[0]) and not torch.equal(cls2[0], cls[0])


# ------------------------------------------------------------------ SimOTA
def test_simota_match_hand_worked():
    a = SimOTAAssigner()
    ious = torch.tensor([[0.9, 0.8, 0.3, 0.0], [0.0, 0.6, 0.7, 0.2]])
    cost = torch.tensor([[1.0, 2.0, 3.0, 9.0], [9.0, 0.5, 4.0, 5.0]])
    # k0 = int(0.9 + 0.8 + 0.3 + 0) = 2 -> candidates 0, 1; k1 = int(1.5) = 1 -> candidate 1;
    # candidate 1 is claimed twice and goes to gt 1 (cost 0.5 < 2.0)
    fg, gt, iou = a.match(cost, ious)
    assert fg.tolist() == [True, True, False, False]
    assert gt.tolist() == [0, 1] and torch.allclose(iou, torch.tensor([0.9, 0.6]))
    # dynamic k is at least 1 (sum 0.3 truncates to 0) and uses only the top-min(10, P) IoUs
    fg, gt, iou = SimOTAAssigner(topk=1).match(torch.tensor([[0.2, 0.1, 0.3]]), torch.tensor([[0.1, 0.2, 0.0]]))
    assert fg.tolist() == [False, True, False] and gt.tolist() == [0]


def _grid_setup():
    gx, gy = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="xy")
    grid = torch.stack([gx.flatten(), gy.flatten()], 1).float()  # index = y * 4 + x
    centers = (grid + 0.5) * 8
    strides = torch.full((16,), 8.0)
    boxes = torch.tensor([[100.0, 100.0, 101.0, 101.0]]).repeat(16, 1)  # IoU 0 with the gt
    return centers, strides, boxes


def test_simota_center_rule_hand_worked():
    centers, strides, boxes = _grid_setup()
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    a = SimOTAAssigner()
    assert a.center_radius == 1.5 and a.penalty == 1e6
    cand, rel = a.geometry(centers, strides, gt)
    # |c - 16| < 12 strictly: centres 12 and 20 only (4 and 28 are exactly 12 away)
    assert cand.nonzero().flatten().tolist() == [5, 6, 9, 10] and rel.all()
    boxes[5] = gt[0]
    boxes[10] = torch.tensor([10.0, 10.0, 26.0, 26.0])  # IoU 196 / 316
    boxes[0] = gt[0]  # not a candidate under the centre rule
    cls, obj = torch.zeros(16, 2), torch.zeros(16)
    cls[10] = torch.tensor([0.3, -0.7])
    obj[10] = 1.2
    # cost of (gt, location 10) by hand
    cost, ious = a.cost(boxes[cand], cls[cand], obj[cand], gt, torch.tensor([1]), rel)
    p = [math.sqrt(sigmoid(x) * sigmoid(1.2)) for x in (0.3, -0.7)]
    iou10 = 196.0 / 316.0
    expected = -math.log(1 - p[0]) - math.log(p[1]) + 3.0 * -math.log(iou10 + 1e-8)
    assert ious[0, 3].item() == pytest.approx(iou10, rel=1e-6)
    assert cost[0, 3].item() == pytest.approx(expected, rel=1e-5)
    # k = int(1 + 0.62) = 1: only location 5
    r = a(boxes, cls, obj, centers, strides, gt, torch.tensor([1]))
    assert r.fg_mask.nonzero().flatten().tolist() == [5] and r.num_fg == 1
    assert r.matched_gt.tolist() == [0] and r.matched_iou.tolist() == pytest.approx([1.0])
    # a second exact box among the candidates: k = int(2.62) = 2
    boxes[6] = gt[0]
    r = a(boxes, cls, obj, centers, strides, gt, torch.tensor([1]))
    assert r.fg_mask.nonzero().flatten().tolist() == [5, 6] and r.num_fg == 2


def test_simota_box_or_center_rule_hand_worked():
    centers, strides, boxes = _grid_setup()
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    a = SimOTAAssigner(rule="box_or_center")
    assert a.center_radius == 2.5 and a.penalty == 1e5
    cand, rel = a.geometry(centers, strides, gt)
    assert cand.all()  # every centre is within 20 px of (16, 16)
    assert rel[0].nonzero().flatten().tolist() == [5, 6, 9, 10]  # in the box AND in the square
    boxes[0] = gt[0]  # candidate, but penalised (outside the box)
    boxes[5] = gt[0]
    boxes[10] = torch.tensor([10.0, 10.0, 26.0, 26.0])
    cls, obj = torch.zeros(16, 2), torch.zeros(16)
    cost, _ = a.cost(boxes, cls, obj, gt, torch.tensor([0]), rel)
    assert cost[0, 0].item() == pytest.approx(1e5 + 2 * math.log(2), rel=1e-6)
    # k = int(1 + 1 + 0.62) = 2: locations 5 and 10 (0 carries the penalty)
    r = a(boxes, cls, obj, centers, strides, gt, torch.tensor([0]))
    assert r.fg_mask.nonzero().flatten().tolist() == [5, 10]
    assert r.matched_iou.tolist() == pytest.approx([1.0, 196.0 / 316.0], rel=1e-6)


@pytest.mark.parametrize("rule", ["center", "box_or_center"])
def test_simota_no_gt_and_no_candidates(rule):
    centers, strides, boxes = _grid_setup()
    a = SimOTAAssigner(rule=rule)
    cls, obj = torch.zeros(16, 2), torch.zeros(16)
    for gt in (torch.zeros(0, 4), torch.tensor([[200.0, 200.0, 210.0, 210.0]])):
        r = a(boxes, cls, obj, centers, strides, gt, torch.zeros(len(gt), dtype=torch.long))
        assert r.num_fg == 0 and not r.fg_mask.any() and r.fg_mask.shape == (16,)
        assert r.matched_gt.numel() == 0 and r.matched_iou.numel() == 0


# ------------------------------------------------------------------ losses
def _iou_giou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    c = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    return inter / union, inter / union - (c - union) / c


PAIRS = [([0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]),   # partial overlap
         ([0.0, 0.0, 4.0, 2.0], [10.0, 10.0, 12.0, 13.0]),   # disjoint
         ([2.0, 2.0, 8.0, 6.0], [0.0, 0.0, 10.0, 10.0]),     # contained
         ([1.0, 2.0, 5.0, 9.0], [1.0, 2.0, 5.0, 9.0])]       # identical


def test_box_iou_losses_against_formulas():
    pred = torch.tensor([p for p, _ in PAIRS], dtype=torch.float64)
    tgt = torch.tensor([t for _, t in PAIRS], dtype=torch.float64)
    iou_l = box_iou_loss(pred, tgt, "iou")
    giou_l = box_iou_loss(pred, tgt, "giou")
    ciou_l = box_iou_loss(pred, tgt, "ciou")
    for i, (a, b) in enumerate(PAIRS):
        iou, giou = _iou_giou(a, b)
        assert iou_l[i].item() == pytest.approx(1 - iou ** 2, abs=1e-9)
        assert giou_l[i].item() == pytest.approx(1 - giou, abs=1e-9)
        # CIoU (Zheng et al. 2020): 1 - IoU + rho^2 / c^2 + alpha v
        rho2 = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2 + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2
        c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
        v = 4 / math.pi ** 2 * (math.atan((b[2] - b[0]) / (b[3] - b[1])) - math.atan((a[2] - a[0]) / (a[3] - a[1]))) ** 2
        alpha = v / (1 - iou + v) if v > 0 else 0.0
        assert ciou_l[i].item() == pytest.approx(1 - iou + rho2 / c2 + alpha * v, abs=1e-6)
    assert box_iou_loss(pred, tgt, "iou", reduction="sum").item() == pytest.approx(iou_l.sum().item())
    with pytest.raises(ValueError, match="loss_type"):
        box_iou_loss(pred, tgt, "diou")


def _loss_setup(grids=((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)), level_sizes=((2, 2),), g=None):
    """2 images x 3 locations x 2 classes; image 0 has 2 gts and 2 fg locations, image 1 none.
    ``g``: the generator to draw the predictions from (default: a new one seeded 0)."""
    g = torch.Generator().manual_seed(0) if g is None else g
    cls = torch.randn(2, 3, 2, generator=g)
    obj = torch.randn(2, 3, generator=g)
    reg = torch.randn(2, 3, 4, generator=g)
    boxes = torch.tensor([[[2.0, 2.0, 18.0, 14.0], [0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 10.0, 10.0]],
                          [[0.0, 0.0, 1.0, 1.0]] * 3])
    preds = YOLOXPredictions(cls, reg, obj, boxes, torch.tensor(grids), torch.full((3,), 8.0), list(level_sizes))
    gts = [Instances((32, 32), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 4.0, 20.0, 12.0]])),
                     gt_classes=torch.tensor([0, 1])),
           Instances((32, 32), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.long))]
    assign = [SimOTAResult(torch.tensor([True, False, True]), torch.tensor([1, 0]), torch.tensor([0.5, 0.25]), 2),
              SimOTAResult(torch.zeros(3, dtype=torch.bool), torch.zeros(0, dtype=torch.long), torch.zeros(0), 0)]
    return preds, gts, assign


def test_losses_normalisation_and_weights_by_hand():
    model = build_yolox(num_classes=2, use_l1=True)
    preds, gts, assign = _loss_setup()
    losses = model.losses(YOLOXStep(preds, gt_instances=gts, assignments=assign))
    assert set(losses) == {"loss_iou", "loss_obj", "loss_cls", "loss_l1"}
    c, o, r = preds.cls_logits.tolist(), preds.obj_logits.tolist(), preds.reg.tolist()
    num_fg = 2.0
    iou0 = 112.0 / 208.0  # (2,2,18,14) vs (4,4,20,12)
    iou2 = 81.0 / 100.0   # (1,1,10,10) vs (0,0,10,10)
    exp_iou = 5.0 * ((1 - iou0 ** 2) + (1 - iou2 ** 2)) / num_fg
    fg = {(0, 0), (0, 2)}
    exp_obj = sum(bce_logit(o[i][a], 1.0 if (i, a) in fg else 0.0) for i in range(2) for a in range(3)) / num_fg
    # location 0 -> gt 1 (class 1, IoU 0.5); location 2 -> gt 0 (class 0, IoU 0.25)
    exp_cls = (bce_logit(c[0][0][0], 0.0) + bce_logit(c[0][0][1], 0.5)
               + bce_logit(c[0][2][0], 0.25) + bce_logit(c[0][2][1], 0.0)) / num_fg
    # L1 targets: gt (4,4,20,12) at cell (0,0), gt (0,0,10,10) at cell (0,1), stride 8
    t0 = [12 / 8 - 0, 8 / 8 - 0, math.log(16 / 8 + 1e-8), math.log(8 / 8 + 1e-8)]
    t2 = [5 / 8 - 0, 5 / 8 - 1, math.log(10 / 8 + 1e-8), math.log(10 / 8 + 1e-8)]
    exp_l1 = (sum(abs(r[0][0][k] - t0[k]) for k in range(4)) + sum(abs(r[0][2][k] - t2[k]) for k in range(4))) / num_fg
    assert losses["loss_iou"].item() == pytest.approx(exp_iou, rel=1e-5)
    assert losses["loss_obj"].item() == pytest.approx(exp_obj, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(exp_cls, rel=1e-5)
    assert losses["loss_l1"].item() == pytest.approx(exp_l1, rel=1e-5)
    # other weights, the L1 switch, and no foreground at all (normaliser 1)
    model.loss_weights = {"iou": 2.0, "obj": 3.0, "cls": 0.5, "l1": 4.0}
    model.use_l1 = False
    losses = model.losses(YOLOXStep(preds, gt_instances=gts, assignments=assign))
    assert losses["loss_iou"].item() == pytest.approx(exp_iou / 5.0 * 2.0, rel=1e-5)
    assert losses["loss_obj"].item() == pytest.approx(3.0 * exp_obj, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(0.5 * exp_cls, rel=1e-5)
    assert losses["loss_l1"].item() == 0.0
    empty = [assign[1], assign[1]]
    losses = model.losses(YOLOXStep(preds, gt_instances=[gts[1], gts[1]], assignments=empty))
    exp_obj0 = sum(bce_logit(o[i][a], 0.0) for i in range(2) for a in range(3))  # divided by max(0, 1)
    assert losses["loss_obj"].item() == pytest.approx(3.0 * exp_obj0, rel=1e-5)
    assert losses["loss_iou"].item() == 0.0 and losses["loss_cls"].item() == 0.0


def test_decode_and_inference_by_hand():
    model = build_yolox(num_classes=2, test_score_thresh=0.1, test_nms_thresh=0.5)
    model.head_strides = [8, 16]
    reg = [torch.zeros(1, 4, 2, 3), torch.zeros(1, 4, 1, 2)]
    reg[1][0, :, 0, 1] = torch.tensor([0.5, 0.25, math.log(2.0), 0.0])
    cls = [torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 1, 2)]
    obj = [torch.full((1, 1, 2, 3), -20.0), torch.full((1, 1, 1, 2), -20.0)]
    preds = model.decode(cls, reg, obj)
    assert preds.boxes.shape == (1, 8, 4) and preds.level_sizes == [(2, 3), (1, 2)]
    # location 4 = level 0, y 1, x 1: centre (8, 8), size 8; location 7 = level 1, x 1, y 0
    assert preds.boxes[0, 4].tolist() == [4.0, 4.0, 12.0, 12.0]
    assert preds.boxes[0, 7].tolist() == pytest.approx([(1.5 * 16) - 16, 4.0 - 8, 24 + 16, 4.0 + 8])
    assert preds.anchor_centers[7].tolist() == [24.0, 8.0] and preds.grids[7].tolist() == [1.0, 0.0]
    # inference: score = sigmoid(obj) * max_c sigmoid(cls), >= thresh, class-wise NMS
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [0.0, 1.0, 10.0, 11.0],
                           [50.0, 50.0, 60.0, 60.0]]])
    c3 = math.log(0.3 / 0.7)  # sigmoid 0.3: score 0.15
    cls_l = torch.tensor([[[2.0, -5.0], [1.0, -5.0], [-5.0, 1.5], [-5.0, c3]]])
    obj_l = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    p = YOLOXPredictions(cls_l, torch.zeros(1, 4, 4), obj_l, boxes, torch.zeros(4, 2), torch.ones(4), [(2, 2)])
    inst = model.inference(p, obj_l, [(64, 64)])[0]
    # 1 is suppressed by 0 (same class, IoU 0.82); 2 has another class; 3 scores 0.15 >= 0.1
    assert inst.pred_classes.tolist() == [0, 1, 1]
    assert inst.scores.tolist() == pytest.approx([0.5 * sigmoid(2.0), 0.5 * sigmoid(1.5), 0.15], rel=1e-6)
    assert inst.pred_boxes.tensor.tolist() == [boxes[0, i].tolist() for i in (0, 2, 3)]
    model.test_score_thresh = inst.scores[2].item()  # the threshold is inclusive
    assert len(model.inference(p, obj_l, [(64, 64)])[0]) == 3
    model.test_score_thresh = 0.16
    assert len(model.inference(p, obj_l, [(64, 64)])[0]) == 2
    model.test_score_thresh = 0.1
    # the objectness argument replaces preds.obj_logits
    inst = model.inference(p, torch.tensor([[-10.0, 0.0, -10.0, 10.0]]), [(64, 64)])[0]
    assert inst.pred_classes.tolist() == [0, 1]
    assert inst.scores.tolist() == pytest.approx([0.5 * sigmoid(1.0), sigmoid(10.0) * 0.3], rel=1e-6)
    model.class_agnostic_nms = True
    model.max_detections_per_image = 1
    assert len(model.inference(p, obj_l, [(64, 64)])[0]) == 1


# -------------------------------------------------------- meta-architecture
def _inputs(n, size=64, num_gt=(0, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = num_gt[i % len(num_gt)]
        xy = torch.rand(k, 2, generator=g) * (size - 24)
        wh = 4 + torch.rand(k, 2, generator=g) * 20
        out.append({"image": torch.randint(0, 256, (3, size, size - 8 * i), generator=g, dtype=torch.uint8),
                    "height": 2 * size, "width": 2 * (size - 8 * i),
                    "instances": Instances((size, size - 8 * i), gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                                           gt_classes=torch.randint(0, 3, (k,), generator=g))})
    return out


@pytest.mark.parametrize("num_gt", [(0, 3), (0, 0)])
def test_yolox_trains_and_infers(num_gt):
    torch.manual_seed(0)
    model = build_yolox(num_classes=3, use_l1=True)
    model.train()
    with EventStorage(0):
        losses = model(_inputs(2, num_gt=num_gt))
    assert set(losses) == {"loss_iou", "loss_obj", "loss_cls", "loss_l1"}
    assert all(torch.isfinite(v) for v in losses.values())
    if num_gt == (0, 0):
        assert losses["loss_iou"].item() == 0.0 and losses["loss_cls"].item() == 0.0
    else:
        assert losses["loss_iou"].item() > 0 and losses["loss_l1"].item() > 0
    sum(losses.values()).backward()
    assert model.head.obj_preds["p3"].bias.grad is not None
    model.eval()
    model.test_score_thresh = 0.0  # random weights: keep everything that survives NMS
    with torch.no_grad():
        out = model(_inputs(2))
    inst = out[1]["instances"]
    assert inst.image_size == (128, 112) and len(inst) > 0
    assert inst.pred_boxes.tensor[:, 2].max() <= 112 and inst.pred_classes.max() < 3


def test_densedetector_contract_hooks_and_visuals():
    """YOLOX fills DenseDetector's forward_training / forward_inference; a subclass changes the
    losses and the inference scores only through the typed hooks, each called once on the step;
    ``"visuals"`` come back per image only when asked (plain YOLOX: before == after)."""
    from detectron2.modeling.meta_arch.dense_detector import DenseDetector

    assert YOLOX.forward_training is not DenseDetector.forward_training and "forward_inference" in vars(YOLOX)
    calls = []

    class Hooked(YOLOX):
        def extra_losses(self, step):
            calls.append(("extra", len(step.assignments), step.image_sizes.tolist()))
            return {"loss_extra": step.preds.obj_logits.sum() * 0.0}

        def class_targets(self, step, fg, gt_boxes):
            calls.append(("targets", int(fg.sum()), tuple(gt_boxes.shape)))
            return torch.ones(int(fg.sum()))  # a target of 1 instead of the matched IoU

        def inference_objectness(self, step):
            calls.append(("objectness", tuple(step.preds.obj_logits.shape)))
            return torch.full_like(step.preds.obj_logits, -1e4)  # nothing can pass the threshold

    torch.manual_seed(0)
    plain = build_yolox(num_classes=3)
    torch.manual_seed(0)
    hooked = build_yolox(num_classes=3, arch=Hooked)
    batch = _inputs(2, num_gt=(3, 2))
    with EventStorage(0):
        a, b = plain(batch), hooked(batch)
    n_fg = [c for c in calls if c[0] == "targets"][0][1]
    assert calls == [("targets", n_fg, (n_fg, 4)), ("extra", 2, [[64, 64], [64, 56]])] and n_fg > 0
    assert set(b) == set(a) | {"loss_extra"}
    assert torch.equal(b["loss_iou"], a["loss_iou"]) and torch.equal(b["loss_obj"], a["loss_obj"])
    assert not torch.equal(b["loss_cls"], a["loss_cls"])  # the hooked class targets
    for m in (plain, hooked):
        m.eval()
        m.test_score_thresh = 0.0
    inputs = [{k: v for k, v in x.items() if k != "instances"} for x in batch]
    with torch.no_grad():
        out = plain(inputs)
        assert all(set(o) == {"instances"} for o in out) and len(out[0]["instances"]) > 0
        plain.return_visuals = True
        vis = plain(inputs)
        # forward_inference: the same detections in network-input pixels (before map_to_original)
        images = plain.preprocess_image(inputs)
        feats = plain.backbone(images.tensor)
        raw = plain.forward_inference(images, [feats[f] for f in plain.head_in_features],
                                      plain.head([feats[f] for f in plain.head_in_features]))
        hooked.test_score_thresh = 1e-3
        assert all(len(o["instances"]) == 0 for o in hooked(inputs))
    assert calls[-1] == ("objectness", (2, vis[0]["visuals"].before.numel()))  # (N, A), A = 64 + 16 + 4
    for o, v, r in zip(out, vis, raw):
        assert torch.equal(o["instances"].scores, v["instances"].scores)
        assert torch.equal(o["instances"].scores, r.scores)
        assert torch.equal(v["visuals"].before, v["visuals"].after)
        assert r.image_size == v["visuals"].image_size
        assert [m.shape for m in v["visuals"].level_maps("before")] == [(8, 8), (4, 4), (2, 2)]
        # mapped back to "height" x "width" = 2 x the input, then clipped (clip_test_boxes)
        H, W = v["instances"].image_size
        expect = torch.min(torch.clamp(r.pred_boxes.tensor * 2, min=0), torch.tensor([W, H, W, H]).float())
        assert torch.allclose(v["instances"].pred_boxes.tensor, expect)
    with pytest.raises(ValueError, match="which"):
        vis[0]["visuals"].level_maps("middle")


def test_preprocess_pads_with_114_then_normalises():
    model = build_yolox(pixel_mean=(1.0, 2.0, 3.0), pixel_std=(2.0, 2.0, 2.0))
    img = torch.zeros(3, 40, 50, dtype=torch.uint8)
    images = model.preprocess_image([{"image": img}])
    assert images.tensor.shape == (1, 3, 64, 64) and images.image_sizes == [(40, 50)]
    assert images.tensor[0, :, 50:, 60:].flatten(1)[:, 0].tolist() == [(114 - 1) / 2, (114 - 2) / 2, (114 - 3) / 2]
    assert images.tensor[0, 0, 0, 0].item() == -0.5
    model.backbone._square_pad = 96
    model.eval()  # the square letterbox is the test-time one
    assert model.preprocess_image([{"image": img}]).tensor.shape == (1, 3, 96, 96)
    model.train()  # training batches are letterboxed (and multi-scale resized) by the data
    assert model.preprocess_image([{"image": img}]).tensor.shape == (1, 3, 64, 64)


# ------------------------------------------------------------------ configs
def test_config_instantiates_and_trains_two_iterations(tmp_path):
    cfg = get_config("yolox/yolox_nano_coco.py")
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    assert cfg.model.backbone.square_pad == 416 and cfg.model.test_nms_thresh == 0.65
    assert cfg.model.test_score_thresh == 0.01 and cfg.model.num_classes == 80
    cfg.model.backbone.square_pad = 0  # 128 px inputs
    cfg.model.num_classes = 3
    model = instantiate(cfg.model)
    assert model.backbone.bottom_up.dark2[0].__class__.__name__ == "DWConv" and model.head.feat_channels == 64
    cfg.optimizer.params.model = model
    cfg.optimizer.lr = 1e-3
    opt = instantiate(cfg.optimizer)
    instantiate(cfg.lr_multiplier)
    before = model.head.obj_preds["p3"].bias.detach().clone()
    model.train()
    with EventStorage(0) as storage:
        for it in range(2):
            storage.iter = it
            losses = model(_inputs(2, size=128, seed=it))
            assert all(torch.isfinite(v) for v in losses.values())
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
    assert not torch.equal(before, model.head.obj_preds["p3"].bias)
    # one value adds the stride-4 level; the head follows
    cfg.model.backbone.in_features = ["dark2", "dark3", "dark4", "dark5"]
    model = instantiate(cfg.model)
    assert model.head_in_features == ["p2", "p3", "p4", "p5"] and model.head_strides == [4, 8, 16, 32]
    with EventStorage(0):
        assert all(torch.isfinite(v) for v in model(_inputs(1, size=64, num_gt=(3,))).values())


@pytest.mark.parametrize("size", sorted(SIZES))
def test_coco_configs_set_the_size(size):
    cfg = get_config(f"yolox/yolox_{size}_coco.py")
    depth, width, depthwise = SIZES[size]
    bu = cfg.model.backbone.bottom_up
    assert (bu.depth, bu.width, bu.depthwise) == (depth, width, depthwise)
    assert cfg.model.head.feat_channels == int(256 * width)
    test_size = 416 if size in ("nano", "tiny") else 640
    aug = cfg.dataloader.test.mapper.augmentations[0]
    assert aug.size == test_size and cfg.dataloader.test.dataset.names == "coco_2017_val"
    # the official evaluator neither clips nor caps (tests/data/test_yolox_test_transform.py
    # checks the network input and the boxes)
    assert cfg.model.clip_test_boxes is False and cfg.model.max_detections_per_image is None


YOLOX_CONFIGS = sorted(str(p.relative_to(p.parents[1])) for p in (Path(__file__).parents[2] / "configs").glob("*/*.py")
                       if "yolox" in p.name and p.parent.name != "common")


@pytest.mark.parametrize("path", YOLOX_CONFIGS)
def test_every_yolox_config_tests_on_the_official_path(path):
    """The test mapper's only augmentation is YOLOX's official resize, to the size the model
    pads its test batch to (else the network input is not the official one)."""
    cfg = get_config(path)
    augs = instantiate(cfg.dataloader.test.mapper.augmentations)
    assert [type(a).__name__ for a in augs] == ["YOLOXTestResize"]
    assert augs[0].size == (cfg.model.backbone.square_pad,) * 2 and augs[0].pre_resize


def test_check_yolox_reference_refuses_a_folder_without_the_official_code(tmp_path, capsys):
    """The check itself needs a clone of the official YOLOX (not here); without one it says so
    in one line with exit status 2."""
    assert tool_module("check_yolox_reference").main(["--reference-repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path}: not a YOLOX clone (no yolox/models)"


# ---------------------------------------------------------------- converter
def _convert_main(argv):
    return tool_module("convert_weights").main(argv)


def _reference_state_dict(size):
    spec = json.loads((REF_KEYS / f"yolox_{size}.json").read_text())
    # every tensor holds its own id (0, 1, 2, ...) so that its destination is recognisable
    return {k: torch.full(shape, float(i)) for i, (k, shape) in enumerate(spec["keys"].items())}, spec


@pytest.mark.realdata
@pytest.mark.parametrize("size", ["s", "nano"])
def test_convert_reference_keys_and_load(size, tmp_path):
    ref, spec = _reference_state_dict(size)
    ids = {k: i for i, k in enumerate(spec["keys"])}
    src, dst = tmp_path / "ref.pth", tmp_path / "out.pth"
    torch.save({"model": ref, "start_epoch": 300}, src)
    assert _convert_main(["yolox", str(src), str(dst)]) == 0
    ckpt = torch.load(dst, weights_only=False)
    assert ckpt["matching_heuristics"] is False and "YOLOX" in ckpt["__author__"]
    depth, width, depthwise = SIZES[size]
    model = build_yolox(depth, width, depthwise)
    result = model.load_state_dict(ckpt["model"], strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    DetectionCheckpointer(model).load(str(dst))  # Detectron2 loads it as is
    sd = model.state_dict()
    landed = {k: int(v.flatten()[0].item()) if v.numel() else None for k, v in sd.items()}
    assert len({v for v in landed.values() if v is not None}) == sum(1 for v in sd.values() if v.numel())
    pairs = {  # reference name -> sod2 name
        "backbone.backbone.stem.conv.conv.weight": "backbone.bottom_up.stem.conv.conv.weight",
        "backbone.backbone.dark2.1.m.0.conv1.conv.weight": "backbone.bottom_up.dark2.1.blocks.0.conv1.conv.weight",
        "backbone.backbone.dark5.1.conv2.bn.running_var": "backbone.bottom_up.dark5.1.conv2.bn.running_var",
        "backbone.backbone.dark5.2.conv3.conv.weight": "backbone.bottom_up.dark5.2.conv3.conv.weight",
        "backbone.lateral_conv0.conv.weight": "backbone.reduce_convs.p5.conv.weight",
        "backbone.reduce_conv1.bn.bias": "backbone.reduce_convs.p4.bn.bias",
        "backbone.C3_p4.conv1.conv.weight": "backbone.td_blocks.p4.conv1.conv.weight",
        "backbone.C3_p3.m.0.conv2.conv.weight" if size == "s" else "backbone.C3_p3.m.0.conv2.dconv.conv.weight":
            "backbone.td_blocks.p3.blocks.0.conv2.conv.weight" if size == "s"
            else "backbone.td_blocks.p3.blocks.0.conv2.dconv.conv.weight",
        "backbone.bu_conv2.conv.weight" if size == "s" else "backbone.bu_conv2.pconv.conv.weight":
            "backbone.bu_convs.p3.conv.weight" if size == "s" else "backbone.bu_convs.p3.pconv.conv.weight",
        "backbone.bu_conv1.bn.weight" if size == "s" else "backbone.bu_conv1.dconv.bn.weight":
            "backbone.bu_convs.p4.bn.weight" if size == "s" else "backbone.bu_convs.p4.dconv.bn.weight",
        "backbone.C3_n3.conv3.conv.weight": "backbone.bu_blocks.p4.conv3.conv.weight",
        "backbone.C3_n4.conv2.bn.running_mean": "backbone.bu_blocks.p5.conv2.bn.running_mean",
        "head.stems.2.conv.weight": "head.stems.p5.conv.weight",
        "head.cls_convs.0.1.bn.weight" if size == "s" else "head.cls_convs.0.1.pconv.bn.weight":
            "head.cls_convs.p3.1.bn.weight" if size == "s" else "head.cls_convs.p3.1.pconv.bn.weight",
        "head.reg_convs.1.0.conv.weight" if size == "s" else "head.reg_convs.1.0.dconv.conv.weight":
            "head.reg_convs.p4.0.conv.weight" if size == "s" else "head.reg_convs.p4.0.dconv.conv.weight",
        "head.cls_preds.1.bias": "head.cls_preds.p4.bias",
        "head.reg_preds.2.weight": "head.reg_preds.p5.weight",
        "head.obj_preds.0.bias": "head.obj_preds.p3.bias",
    }
    for ref_key, key in pairs.items():
        assert landed[key] == ids[ref_key], (ref_key, key)


@pytest.mark.realdata
def test_convert_errors(tmp_path, capsys):
    assert _convert_main(["yolox", str(tmp_path / "missing.pth"), str(tmp_path / "o.pth")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    torch.save({"model": {"backbone.body.conv1.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    assert _convert_main(["yolox", str(tmp_path / "other.pth"), str(tmp_path / "o.pth")]) == 2
    assert "not a YOLOX state dict" in capsys.readouterr().err
    ref, _ = _reference_state_dict("nano")
    ref["head.extra_preds.0.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="head.extra_preds.0.weight"):
        convert_yolox_state_dict(ref)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    assert _convert_main(["yolox", str(tmp_path / "text.pth"), str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.pth").exists()
