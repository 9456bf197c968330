"""Better Sampling's parts (sod2/modeling/methods/better_sampling/components.py) against hand
values and naive loops written here: the scale-aligned (ST) target, the SR weight generator
with hand-set weights (both orders, the discount exponent, detached mean-1 option, one and
zero positives), the SPR losses on a hand-built layout of sampling points, and the SR
statistics logging. The baseline pieces they build on (box IoU/GIoU, VFL's IoU target, the
varifocal loss) are tested in tests/modeling/test_vfl_pieces.py."""
import math

import pytest
import torch
import torchvision
from detectron2.utils.events import EventStorage

from sod2.modeling.methods.better_sampling import (SamplePointRefinement, SampleReweighting, ScaleAlignedTarget,
                                                   log_reweighting_stats)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------------ targets
def st_by_hand(pred, gt, beta, theta):
    """c = u^beta v^(1-beta), v = exp(-theta (sqrt(rho) - 1)^2), rho = area(pred) / area(gt)."""
    x0, y0 = max(pred[0] - pred[2] / 2, gt[0] - gt[2] / 2), max(pred[1] - pred[3] / 2, gt[1] - gt[3] / 2)
    x1, y1 = min(pred[0] + pred[2] / 2, gt[0] + gt[2] / 2), min(pred[1] + pred[3] / 2, gt[1] + gt[3] / 2)
    inter = max(x1 - x0, 0) * max(y1 - y0, 0)
    u = inter / (pred[2] * pred[3] + gt[2] * gt[3] - inter)
    rho = pred[2] * pred[3] / (gt[2] * gt[3])
    v = math.exp(-theta * (math.sqrt(rho) - 1) ** 2)
    return u ** beta * v ** (1 - beta)


def test_scale_aligned_target_hand_values():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.1, 0.05], [0.4, 0.4, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1]],
                        dtype=torch.float64, requires_grad=True)
    gt = torch.tensor([[0.5, 0.5, 0.1, 0.1], [0.5, 0.5, 0.1, 0.1], [0.4, 0.4, 0.1, 0.1], [0.2, 0.2, 0.1, 0.1]],
                      dtype=torch.float64)
    c = ScaleAlignedTarget()(pred, gt)
    assert not c.requires_grad
    # written out: (1) u = 0.01 / 0.04, rho = 4, r = 2; (2) u = 0.5, rho = 0.5; (3) equal -> 1; (4) disjoint -> 0
    expected = [0.25 ** 0.73 * math.exp(-6.0 * 1.0) ** 0.27,
                0.5 ** 0.73 * math.exp(-6.0 * (math.sqrt(0.5) - 1) ** 2) ** 0.27,
                1.0, 0.0]
    assert c.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # other beta / theta reach the formula
    c2 = ScaleAlignedTarget(beta=0.3, theta=1.5)(pred, gt)
    expected2 = [st_by_hand(p, q, 0.3, 1.5) for p, q in zip(pred.tolist(), gt.tolist())]
    assert c2.tolist() == pytest.approx(expected2, rel=1e-9, abs=1e-12)
    assert c2[0].item() != pytest.approx(c[0].item())


# ------------------------------------------------------------------------- SR
def bn_batch(column, weight, bias, eps=1e-5):
    """BatchNorm of one channel over the batch (biased variance), by hand."""
    m = sum(column) / len(column)
    var = sum((x - m) ** 2 for x in column) / len(column)
    return [(x - m) / math.sqrt(var + eps) * weight + bias for x in column]


def linear(x, W, b):
    return [sum(W[o][i] * x[i] for i in range(len(x))) + b[o] for o in range(len(W))]


def sr_by_hand(h_cls, h_reg, t, s, W, order="bn_relu"):
    """The weight generator with plain python lists (P rows of C values)."""
    def block(rows, bn_w, bn_b):  # rows: P x K -> P x K, channel-wise over the batch
        cols = list(zip(*rows))
        out_cols = []
        for k, col in enumerate(cols):
            if order == "bn_relu":
                out_cols.append([max(v, 0.0) for v in bn_batch(col, bn_w[k], bn_b[k])])
            else:
                out_cols.append(bn_batch([max(v, 0.0) for v in col], bn_w[k], bn_b[k]))
        return [list(r) for r in zip(*out_cols)]

    pre1 = [linear(hr + hc, W["w1"], W["b1"]) for hc, hr in zip(h_cls, h_reg)]  # cat(H_reg, H_cls)
    a = [[sigmoid(v) for v in row] for row in block(pre1, W["g1"], W["be1"])]
    gate = [linear(row, W["w2"], W["b2"]) for row in a]
    out = {}
    for key, h, g, be in (("cls", h_cls, W["gc"], W["bec"]), ("reg", h_reg, W["gr"], W["ber"])):
        pre3 = [linear([hv * gv for hv, gv in zip(hi, gi)], W["w3"], W["b3"]) for hi, gi in zip(h, gate)]
        w = [sigmoid(row[0]) for row in block(pre3, [g], [be])]
        out[key] = [wi ** (1 - abs(ti - si)) for wi, ti, si in zip(w, t, s)]
    return out["cls"], out["reg"]


HAND_WEIGHTS = {
    "w1": [[0.5, -1.0, 0.3, 0.8], [-0.7, 0.2, 1.1, -0.4]], "b1": [0.1, -0.2],
    "g1": [1.3, 0.7], "be1": [0.2, -0.1],
    "w2": [[0.9, -0.6], [0.4, 1.2]], "b2": [-0.3, 0.5],
    "w3": [[1.5, -0.8]], "b3": [0.05],
    "gc": 0.9, "bec": 0.3, "gr": 1.4, "ber": -0.2,
}


def make_sr(order="bn_relu", **kw):
    sr = SampleReweighting(hidden_dim=2, order=order, **kw)
    W = HAND_WEIGHTS
    with torch.no_grad():
        sr.conv1.weight.copy_(torch.tensor(W["w1"]))
        sr.conv1.bias.copy_(torch.tensor(W["b1"]))
        sr.norm1.weight.copy_(torch.tensor(W["g1"]))
        sr.norm1.bias.copy_(torch.tensor(W["be1"]))
        sr.conv2.weight.copy_(torch.tensor(W["w2"]))
        sr.conv2.bias.copy_(torch.tensor(W["b2"]))
        sr.conv3.weight.copy_(torch.tensor(W["w3"]))
        sr.conv3.bias.copy_(torch.tensor(W["b3"]))
        sr.norm_cls.weight.fill_(W["gc"])
        sr.norm_cls.bias.fill_(W["bec"])
        sr.norm_reg.weight.fill_(W["gr"])
        sr.norm_reg.bias.fill_(W["ber"])
    return sr.train()


H_CLS = [[0.3, -1.2], [1.5, 0.4], [-0.6, 0.9], [0.2, 0.1]]
H_REG = [[-0.5, 0.7], [0.8, -1.1], [1.2, 0.3], [-0.9, -0.2]]
T = [0.8, 0.3, 0.55, 0.1]
S = [0.7, 0.9, 0.2, 0.1]


@pytest.mark.parametrize("order", ["bn_relu", "relu_bn"])
def test_sample_reweighting_vs_hand(order):
    sr = make_sr(order)
    r_cls, r_reg = sr(torch.tensor(H_CLS), torch.tensor(H_REG), torch.tensor(T), torch.tensor(S))
    e_cls, e_reg = sr_by_hand(H_CLS, H_REG, T, S, HAND_WEIGHTS, order)
    assert r_cls.tolist() == pytest.approx(e_cls, rel=1e-5)
    assert r_reg.tolist() == pytest.approx(e_reg, rel=1e-5)
    assert r_cls.requires_grad and r_reg.requires_grad  # the paper literally: gradient on
    if order == "bn_relu":  # w in [0.5, 1), r in [w, 1]
        assert all(0.5 <= v <= 1.0 for v in e_cls + e_reg)
    # the last positive has t == s: r is w itself; the discount lifts the others towards 1
    w_cls, w_reg = sr.weights(torch.tensor(H_CLS), torch.tensor(H_REG))
    assert r_cls[3].item() == pytest.approx(w_cls[3].item(), rel=1e-6)
    assert (r_cls >= w_cls - 1e-7).all() and (r_reg >= w_reg - 1e-7).all()


def test_sample_reweighting_orders_and_inputs_differ():
    args = (torch.tensor(H_CLS), torch.tensor(H_REG), torch.tensor(T), torch.tensor(S))
    a, _ = make_sr("bn_relu")(*args)
    b, _ = make_sr("relu_bn")(*args)
    assert not torch.allclose(a, b)
    # swapping the concatenation order of H_reg, H_cls changes the weights (the test pins it)
    swapped, _ = sr_by_hand(H_REG, H_CLS, T, S, HAND_WEIGHTS)
    assert a.tolist() != pytest.approx(swapped, rel=1e-3)


def test_sample_reweighting_gradients():
    h_cls = torch.tensor(H_CLS, requires_grad=True)
    h_reg = torch.tensor(H_REG, requires_grad=True)
    t = torch.tensor(T, requires_grad=True)
    sr = make_sr()
    r_cls, r_reg = sr(h_cls, h_reg, t, torch.tensor(S))
    (r_cls.sum() + r_reg.sum()).backward()
    assert sr.conv1.weight.grad.abs().sum() > 0 and sr.conv3.weight.grad.abs().sum() > 0
    assert h_cls.grad is None and h_reg.grad is None and t.grad is None  # inputs and t detached
    sr = make_sr(detach_inputs=False)
    r_cls, r_reg = sr(h_cls, h_reg, torch.tensor(T), torch.tensor(S))
    (r_cls.sum() + r_reg.sum()).backward()
    assert h_cls.grad.abs().sum() > 0 and h_reg.grad.abs().sum() > 0


def test_sample_reweighting_detached_mean_one():
    args = (torch.tensor(H_CLS), torch.tensor(H_REG), torch.tensor(T), torch.tensor(S))
    r_cls, r_reg = make_sr(detach_normalize=True)(*args)
    assert not r_cls.requires_grad and not r_reg.requires_grad
    e_cls, e_reg = sr_by_hand(H_CLS, H_REG, T, S, HAND_WEIGHTS)
    assert r_cls.tolist() == pytest.approx([v / (sum(e_cls) / 4) for v in e_cls], rel=1e-5)
    assert r_reg.tolist() == pytest.approx([v / (sum(e_reg) / 4) for v in e_reg], rel=1e-5)
    assert r_cls.mean().item() == pytest.approx(1.0, rel=1e-6)


def test_sample_reweighting_one_and_zero_positives():
    sr = make_sr()
    mean_before = sr.norm1.running_mean.clone()
    r_cls, r_reg = sr(torch.tensor(H_CLS[:1]), torch.tensor(H_REG[:1]), torch.tensor(T[:1]), torch.tensor(S[:1]))
    # one sample is its own mean: each BN gives its bias; w = sigmoid(relu(beta))
    e = 1 - abs(T[0] - S[0])
    assert r_cls.item() == pytest.approx(sigmoid(max(HAND_WEIGHTS["bec"], 0)) ** e, rel=1e-6)
    assert r_reg.item() == pytest.approx(sigmoid(max(HAND_WEIGHTS["ber"], 0)) ** e, rel=1e-6)
    assert torch.equal(sr.norm1.running_mean, mean_before)
    r_cls.backward()
    assert sr.norm_cls.bias.grad is not None
    r_cls, r_reg = sr(torch.zeros(0, 2), torch.zeros(0, 2), torch.zeros(0), torch.zeros(0))
    assert r_cls.shape == (0,) and r_reg.shape == (0,)


def test_sample_reweighting_bad_options():
    with pytest.raises(ValueError):
        SampleReweighting(4, order="relu")
    with pytest.raises(ValueError):
        SampleReweighting(4, cls_weight="mul")


def test_log_reweighting_stats():
    r_cls, r_reg = torch.tensor([0.5, 0.7, 0.9]), torch.tensor([1.0, 0.6, 0.8])
    log_reweighting_stats(r_cls, r_reg)  # no storage: nothing, no error
    with EventStorage() as storage:
        log_reweighting_stats(r_cls, r_reg, prefix="bs")
        latest = {k: v[0] for k, v in storage.latest().items()}
    assert latest["bs/r_cls_mean"] == pytest.approx(0.7)
    assert latest["bs/r_cls_std"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert latest["bs/r_reg_mean"] == pytest.approx(0.8)
    assert latest["bs/r_reg_std"] == pytest.approx(0.2)


# ------------------------------------------------------------------------ SPR
def spr_layout():
    """One positive query, 2 heads, 2 levels, 2 points (box-relative |d| = |offset| / 4,
    inside the box iff |d| <= 0.5)."""
    offsets = torch.tensor([[[[1.0, -1.0], [3.0, 0.0]],      # h0 l0: inside; outside |d| 0.75
                             [[0.0, 5.0], [-6.0, 4.0]]],     # h0 l1: outside (0, 1.25); (1.5, 1.0)
                            [[[2.0, 2.0], [2.5, 0.0]],       # h1 l0: on the border (inside); (0.625, 0)
                             [[2.0, 2.0], [-1.0, -2.0]]]])   # h1 l1: both inside
    attention = torch.tensor([[[0.1, 0.3], [0.2, 0.4]],
                              [[0.2, 0.5], [0.1, 0.2]]])
    return offsets[None].clone().requires_grad_(True), attention[None].clone().requires_grad_(True)


def test_spr_hand_layout():
    offsets, attention = spr_layout()
    spr = SamplePointRefinement(num_points=2)
    lo, la = spr(offsets, attention, layer_index=0)  # eta 1.5: half-size 0.75
    # outside points beyond 0.75: h0 l1 k0 (1.25 - 0.75)^2; h0 l1 k1 ((1.5 - .75) + (1.0 - .75))^2
    assert lo.item() == pytest.approx(0.5 ** 2 + 1.0 ** 2)
    # h0 l0: 0.3 - 0.1; h0 l1: no inside point -> 0.2 + 0.4; h1 l0: 0.5 - 0.2; h1 l1: none outside
    assert la.item() == pytest.approx(0.2 + 0.6 + 0.3)
    la.backward()
    expected_grad = torch.tensor([[[-1.0, 1.0], [1.0, 1.0]], [[-1.0, 1.0], [0.0, 0.0]]])
    assert torch.equal(attention.grad[0], expected_grad)
    # the last layer (eta 1.0, half-size 0.5): every outside point pays its distance beyond the box
    lo5, la5 = spr(offsets, attention, layer_index=5)
    assert lo5.item() == pytest.approx(0.25 ** 2 + 0.75 ** 2 + 1.5 ** 2 + 0.125 ** 2)
    assert la5.item() == pytest.approx(la.item())  # the inside/outside sets do not depend on eta
    lo5.backward()
    # d/d offset_y of h0 l1 k0: 2 * 0.75 * (1 / 4)
    assert offsets.grad[0, 0, 1, 0, 1].item() == pytest.approx(2 * 0.75 / 4)
    assert offsets.grad[0, 1, 1].abs().sum().item() == 0.0  # inside points: no offset loss


def test_spr_eta_per_layer_and_checks():
    offsets, attention = spr_layout()
    spr = SamplePointRefinement(etas=(1.5, 1.0), num_points=2)
    assert spr(offsets, attention, 1)[0].item() == pytest.approx(0.25 ** 2 + 0.75 ** 2 + 1.5 ** 2 + 0.125 ** 2)
    with pytest.raises(ValueError):
        spr(offsets, attention, 2)
    with pytest.raises(ValueError):
        SamplePointRefinement(num_points=4)(offsets, attention, 0)
    # num_points=None reads it from the tensors
    assert SamplePointRefinement(num_points=None)(offsets, attention, 0)[0].item() == pytest.approx(1.25)
    lo, la = spr(offsets[:0], attention[:0], 0)
    assert lo.item() == 0.0 and la.item() == 0.0


def test_spr_reference_init_offsets_are_inside():
    """RT-DETR's initial offsets (head direction normalised by its max-abs component, times
    p + 1 for p < 4) keep every point inside the reference box: no SPR loss at the start."""
    M, L, P = 8, 3, 4
    offsets = torch.zeros(M, L, P, 2)
    for m in range(M):
        th = 2 * math.pi * m / M
        d = torch.tensor([math.cos(th), math.sin(th)])
        d = d / d.abs().max()
        for p in range(P):
            offsets[m, :, p] = d * (p + 1)
    attention = torch.full((1, M, L, P), 1.0 / (L * P))
    lo, la = SamplePointRefinement()(offsets[None], attention, 5)
    assert lo.item() == 0.0 and la.item() == 0.0
