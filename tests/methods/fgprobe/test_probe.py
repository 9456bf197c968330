"""Foreground Probing's module: STSM selection, FRM against a naive per-token loop, the gate,
L_ref and the inference rule (the YOLOX integration is tested in test_yolox_fgprobe.py)."""
import math

import pytest
import torch

from sod2.modeling.methods.fgprobe.probe import ForegroundProbe


def _probe(**kw):
    torch.manual_seed(0)
    return ForegroundProbe(cls_dim=6, reg_dim=5, key_dim=4, value_dim=3, **kw).double()


def test_select_top_k_with_ties_padding_and_small_maps():
    p = _probe(num_tokens=3)
    obj = torch.tensor([[0.5, 2.0, 2.0, -1.0, 2.0, 0.1],
                        [9.0, 1.0, 3.0, 3.0, 0.0, 5.0]])
    # ties are broken by the lower location index
    assert p.select(obj).tolist() == [[1, 2, 4], [0, 5, 2]]
    # image 1 is smaller: its padded locations (0 and 5) are never chosen
    valid = torch.tensor([[True] * 6, [False, True, True, True, True, False]])
    assert p.select(obj, valid).tolist() == [[1, 2, 4], [2, 3, 1]]
    # K larger than the number of locations: all of them, best first
    assert _probe(num_tokens=10).select(obj[:1]).tolist() == [[1, 2, 4, 0, 5, 3]]
    with pytest.raises(ValueError):
        ForegroundProbe(4, 4, num_tokens=0)


def _naive_refine(p, cls_tok, reg_tok):
    """FRM for one image with explicit loops over tokens (float64)."""
    K = cls_tok.shape[0]
    lin = lambda m, v: [sum(m.weight[o, i].item() * v[i] for i in range(m.in_features)) + m.bias[o].item()  # noqa: E731
                        for o in range(m.out_features)]
    c, r = cls_tok.tolist(), reg_tok.tolist()
    qc, kc = [lin(p.q_cls, x) for x in c], [lin(p.k_cls, x) for x in c]
    qr, kr, vr = [lin(p.q_reg, x) for x in r], [lin(p.k_reg, x) for x in r], [lin(p.v_reg, x) for x in r]
    if p.gate is None:
        lam = p.fixed_gate
    else:
        f = [sum(r[k][i] for k in range(K)) / K for i in range(len(r[0]))] + \
            [sum(c[k][i] for k in range(K)) / K for i in range(len(c[0]))]
        lam = 1 / (1 + math.exp(-lin(p.gate, f)[0]))
    out = []
    for i in range(K):
        def softmax_row(q, kk):
            s = [sum(a * b for a, b in zip(q[i], kk[j])) / math.sqrt(p.key_dim) for j in range(K)]
            m = max(s)
            e = [math.exp(v - m) for v in s]
            return [v / sum(e) for v in e]
        ar, ac = softmax_row(qr, kr), softmax_row(qc, kc)
        a = [lam * x + (1 - lam) * y for x, y in zip(ar, ac)]
        ctx = [sum(a[j] * vr[j][d] for j in range(K)) for d in range(len(vr[0]))]
        out.append(lin(p.pred, r[i] + ctx)[0])
    return out, lam


@pytest.mark.parametrize("gate", ["learnable", 0.3])
def test_refine_against_naive_loop(gate):
    p = _probe(gate=gate)
    with torch.no_grad():
        p.pred.bias.normal_()  # not the prior: every term shows
    g = torch.Generator().manual_seed(1)
    cls_tok = torch.randn(2, 4, 6, generator=g, dtype=torch.float64)
    reg_tok = torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    refined, lam = p.refine(cls_tok, reg_tok)
    assert refined.shape == (2, 4) and lam.shape == (2,)
    for n in range(2):
        expect, lam_n = _naive_refine(p, cls_tok[n], reg_tok[n])
        assert refined[n].tolist() == pytest.approx(expect, abs=1e-10)
        assert lam[n].item() == pytest.approx(lam_n, abs=1e-12)
    if gate != "learnable":
        assert lam.tolist() == [0.3, 0.3] and p.gate is None


def test_forward_gathers_features_with_gradients_and_prior():
    p = _probe(num_tokens=2)
    g = torch.Generator().manual_seed(2)
    obj = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 0.5]], dtype=torch.float64)
    cls = torch.randn(2, 3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    reg = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    idx, refined, _ = p(obj, cls, reg)
    assert idx.tolist() == [[1, 2], [0, 2]]
    refined.sum().backward()
    # only the selected locations receive gradient
    assert (cls.grad[0, 0] == 0).all() and cls.grad[0, 1].abs().sum() > 0 and (reg.grad[1, 1] == 0).all()
    # the refined logit starts at YOLOX's objectness prior: bias = -log(99)
    assert p.pred.bias.item() == pytest.approx(-math.log(99))


def test_loss_by_hand_and_inference_rules():
    p = _probe(num_tokens=2, loss_weight=2.0)
    refined = torch.tensor([[0.0, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    idx = torch.tensor([[3, 0], [1, 2]])
    fg = torch.tensor([[False, False, False, True], [False, True, False, False]])
    bce = lambda x, y: -(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))  # noqa: E731
    expect = 2.0 * (bce(0.0, 1) + bce(2.0, 0) + bce(-1.0, 1) + bce(1.0, 0)) / 4
    assert p.losses(refined, idx, fg)["loss_ref"].item() == pytest.approx(expect)
    obj = torch.zeros(2, 4, dtype=torch.float64)
    assert p.apply(obj, idx, refined).tolist() == [[2.0, 0.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0]]
    only = _probe(num_tokens=2, inference="tokens_only").apply(obj, idx, refined)
    assert only[0].tolist() == [2.0, float("-inf"), float("-inf"), 0.0]


def test_gather_levels_equals_flattened_gather():
    g = torch.Generator().manual_seed(3)
    feats = [torch.randn(2, 4, 3, 5, generator=g, requires_grad=True), torch.randn(2, 4, 2, 2, generator=g)]
    flat = torch.cat([f.flatten(2) for f in feats], dim=2).transpose(1, 2)  # (N, 19, D)
    idx = torch.tensor([[18, 0, 14, 15], [3, 17, 16, 9]])
    out = ForegroundProbe.gather_levels(feats, idx)
    assert torch.equal(out, ForegroundProbe.gather(flat, idx))
    out.sum().backward()
    assert feats[0].grad.flatten(2)[0, :, 0].abs().sum() > 0 and (feats[0].grad.flatten(2)[0, :, 1] == 0).all()
