"""RT-DETR's hybrid encoder (sod2/modeling/transformer/hybrid_encoder.py): the 2-D sin-cos
position embedding against a hand loop (including the reference's (w, h) order on non-square
maps), the eval-size precomputed embedding, the AIFI layer against hand-written attention /
LayerNorm / GELU, the CCFM data flow written out level by level, shapes and strides, and the
parameter names, shapes and counts against the reference's
(tests/fixtures/reference-keys/rtdetr_*.json; every encoder parameter is trainable there)."""
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sod2.layers import ConvNormAct, CSPRepLayer
from sod2.modeling.backbone import ResNetVd
from sod2.modeling.transformer.hybrid_encoder import (AIFIEncoder, AIFILayer, HybridEncoder,
                                                      build_2d_sincos_position_embedding)

REPO = Path(__file__).resolve().parents[2]
REF_KEYS = REPO / "tests" / "fixtures" / "reference-keys"
STATS = ("running_mean", "running_var", "num_batches_tracked")
# spec B.1: the encoder settings of each reference model
REFERENCE_ENCODERS = {
    "rtdetr_r18vd": dict(in_channels=(128, 256, 512), expansion=0.5),
    "rtdetr_r34vd": dict(in_channels=(128, 256, 512), expansion=0.5),
    "rtdetr_r50vd_m": dict(expansion=0.5),
    "rtdetr_r50vd": dict(),
    "rtdetr_r101vd": dict(hidden_dim=384, dim_feedforward=2048),
}
FEATS = ("res3", "res4", "res5")


def _tiny(**kwargs):
    cfg = dict(in_channels=(6, 10, 12), hidden_dim=16, nhead=2, dim_feedforward=24)
    cfg.update(kwargs)
    return HybridEncoder(**cfg)


def _inputs(h5, w5, channels=(6, 10, 12), batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f: torch.randn(batch, c, h5 * 2 ** (2 - i), w5 * 2 ** (2 - i), generator=g)
            for i, (f, c) in enumerate(zip(FEATS, channels))}


def _omega(dim, temperature=10000.0):
    d = dim // 4
    return [1.0 / temperature ** (k / d) for k in range(d)]


def test_position_embedding_square_is_row_then_column():
    H = W = 5
    dim = 16
    pe = build_2d_sincos_position_embedding(W, H, dim, 10000.0)
    assert pe.shape == (1, H * W, dim) and pe.dtype == torch.float32
    om = _omega(dim)
    for y in range(H):
        for x in range(W):
            t = y * W + x  # row-major flattening of an (H, W) map
            expected = ([math.sin(y * o) for o in om] + [math.cos(y * o) for o in om]
                        + [math.sin(x * o) for o in om] + [math.cos(x * o) for o in om])
            assert torch.allclose(pe[0, t], torch.tensor(expected), atol=1e-6), (y, x)


def test_position_embedding_non_square_keeps_the_reference_order():
    w, h, dim, temp = 4, 3, 8, 100.0
    pe = build_2d_sincos_position_embedding(w, h, dim, temp)
    om = _omega(dim, temp)
    # the reference meshgrids (arange(w), arange(h)) with 'ij' indexing and flattens: the
    # first coordinate a runs over w and is the slow one
    t = 0
    for a in range(w):
        for b in range(h):
            expected = ([math.sin(a * o) for o in om] + [math.cos(a * o) for o in om]
                        + [math.sin(b * o) for o in om] + [math.cos(b * o) for o in om])
            assert torch.allclose(pe[0, t], torch.tensor(expected), atol=1e-6), (a, b)
            t += 1
    # which is NOT (row, column) of the row-major (h, w) map: token 3 is row 0, column 3,
    # but gets a = 1, b = 0
    row0_col3 = ([math.sin(0.0) for o in om] + [math.cos(0.0) for o in om]
                 + [math.sin(3 * o) for o in om] + [math.cos(3 * o) for o in om])
    assert not torch.allclose(pe[0, 3], torch.tensor(row0_col3), atol=1e-3)
    with pytest.raises(ValueError):
        build_2d_sincos_position_embedding(2, 2, 10)


def test_eval_embedding_is_precomputed_for_the_eval_size_only():
    torch.manual_seed(0)
    m = _tiny(eval_spatial_size=(64, 96))
    buf = m.pos_embed2
    assert buf.shape == (1, 2 * 3, 16)  # stride 32: 2 x 3 map
    assert torch.equal(buf, build_2d_sincos_position_embedding(3, 2, 16))  # (w, h) order
    assert "pos_embed2" not in m.state_dict()  # non-persistent, as the reference
    plain = _tiny()
    plain.load_state_dict(m.state_dict())
    x = _inputs(2, 3)
    m.eval()
    plain.eval()
    with torch.no_grad():
        ref = m(x)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ref, plain(x)))
        m.pos_embed2.add_(1.0)  # the eval path reads the buffer...
        changed = m(x)
        assert not torch.allclose(changed[-1], ref[-1], atol=1e-3)
        # ...only for the size it was built for; other sizes are computed on the fly
        y = _inputs(3, 3)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m(y), plain(y)))
        # training always computes it
        m.train()
        plain.train()
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(m(x), plain(x)))


def _layer_norm(x, ln):
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def test_aifi_layer_matches_hand_computation():
    torch.manual_seed(0)
    d, heads, ff, B, S = 8, 2, 12, 2, 5
    layer = AIFILayer(d, heads, ff, dropout=0.0, activation="gelu").eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # non-trivial biases and norms
    src = torch.randn(B, S, d)
    pos = torch.randn(1, S, d)
    out = layer(src, pos_embed=pos)

    W, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    q = (src + pos) @ W[:d].T + b[:d]  # position on queries and keys...
    k = (src + pos) @ W[d:2 * d].T + b[d:2 * d]
    v = src @ W[2 * d:].T + b[2 * d:]  # ...not on values
    dh = d // heads
    attn = torch.zeros(B, S, d)
    for n in range(B):
        for hd in range(heads):
            sl = slice(hd * dh, (hd + 1) * dh)
            scores = q[n, :, sl] @ k[n, :, sl].T / math.sqrt(dh)
            attn[n, :, sl] = torch.softmax(scores, dim=-1) @ v[n, :, sl]
    attn = attn @ layer.self_attn.out_proj.weight.T + layer.self_attn.out_proj.bias
    x = _layer_norm(src + attn, layer.norm1)  # post-norm
    hidden = x @ layer.linear1.weight.T + layer.linear1.bias
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2.0)))  # exact GELU
    x = _layer_norm(x + hidden @ layer.linear2.weight.T + layer.linear2.bias, layer.norm2)
    assert torch.allclose(out, x, atol=1e-5)
    # without a position embedding q = k = v input
    assert not torch.allclose(layer(src), out, atol=1e-3)

    stack = AIFIEncoder(2, d_model=d, nhead=heads, dim_feedforward=ff).eval()
    assert len(stack.layers) == 2
    assert torch.allclose(stack(src, pos), stack.layers[1](stack.layers[0](src, pos), pos))


def test_ccfm_data_flow_written_out():
    """The reference's fusion for three levels P3, P4, P5 (P5 after AIFI), level by level:
    top-down  L5 = lat0(P5), F4 = fpn0([up(L5), P4]), L4 = lat1(F4), F3 = fpn1([up(L4), P3]);
    bottom-up N3 = F3, N4 = pan0([down0(N3), L4]), N5 = pan1([down1(N4), L5])."""
    torch.manual_seed(0)
    m = _tiny(expansion=0.5, depth_mult=1 / 3).eval()
    assert all(len(b.bottlenecks) == 1 for b in list(m.fpn_blocks) + list(m.pan_blocks))
    x = _inputs(2, 3)
    up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
    with torch.no_grad():
        out = m(x)
        p3, p4, p5 = (m.input_proj[i](x[f]) for i, f in enumerate(FEATS))
        b, c, h, w = p5.shape
        tokens = p5.flatten(2).transpose(1, 2)
        pos = build_2d_sincos_position_embedding(w, h, c)
        p5 = m.encoder[0](tokens, pos).transpose(1, 2).reshape(b, c, h, w)
        l5 = m.lateral_convs[0](p5)
        f4 = m.fpn_blocks[0](torch.cat([up(l5), p4], 1))
        l4 = m.lateral_convs[1](f4)
        f3 = m.fpn_blocks[1](torch.cat([up(l4), p3], 1))
        n3 = f3
        n4 = m.pan_blocks[0](torch.cat([m.downsample_convs[0](n3), l4], 1))
        n5 = m.pan_blocks[1](torch.cat([m.downsample_convs[1](n4), l5], 1))
    for got, want in zip(out, (n3, n4, n5)):
        assert torch.allclose(got, want, atol=1e-5)


def test_structure_and_shapes_on_a_resnet_vd():
    torch.manual_seed(0)
    backbone = ResNetVd(18, freeze_at=0, norm="BN").eval()
    shapes = backbone.output_shape()
    enc = HybridEncoder(in_features=FEATS, in_channels=[shapes[f].channels for f in FEATS],
                        feat_strides=[shapes[f].stride for f in FEATS], hidden_dim=32, nhead=4,
                        dim_feedforward=64, expansion=0.5).eval()
    assert enc.out_channels == [32, 32, 32] and enc.out_strides == [8, 16, 32]
    assert isinstance(enc.lateral_convs[0], ConvNormAct) and enc.lateral_convs[0].conv.kernel_size == (1, 1)
    assert isinstance(enc.lateral_convs[0].act, nn.SiLU)
    assert enc.downsample_convs[0].conv.kernel_size == (3, 3) and enc.downsample_convs[0].conv.stride == (2, 2)
    assert isinstance(enc.fpn_blocks[0], CSPRepLayer) and len(enc.fpn_blocks[0].bottlenecks) == 3
    assert isinstance(enc.encoder[0].layers[0].activation, nn.GELU)
    assert isinstance(enc.input_proj[0][1], nn.BatchNorm2d) and enc.input_proj[0][0].bias is None
    with torch.no_grad():
        out = enc(backbone(torch.randn(2, 3, 64, 96)))
    assert [tuple(o.shape) for o in out] == [(2, 32, 8, 12), (2, 32, 4, 6), (2, 32, 2, 3)]
    # gradients reach every encoder parameter in training
    enc.train()
    out = enc({f: t.requires_grad_() for f, t in _inputs(2, 2, channels=(128, 256, 512)).items()})
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_encoder_options():
    torch.manual_seed(0)
    x = _inputs(2, 2)
    no_aifi = _tiny(num_encoder_layers=0).eval()
    assert len(no_aifi.encoder[0].layers) == 0
    two = _tiny(use_encoder_idx=(1, 2)).eval()
    assert len(two.encoder) == 2
    with torch.no_grad():
        assert [o.shape[1:] for o in no_aifi(x)] == [o.shape[1:] for o in two(x)]
    with pytest.raises(ValueError):
        _tiny(use_encoder_idx=(3,))
    with pytest.raises(ValueError):
        HybridEncoder(in_features=("res4", "res5"), in_channels=(1, 2, 3))


@pytest.mark.realdata
@pytest.mark.parametrize("model", list(REFERENCE_ENCODERS))
def test_names_shapes_and_counts_match_the_reference(model):
    ref = json.loads((REF_KEYS / f"{model}.json").read_text())
    keys = {k[len("encoder."):]: v for k, v in ref["keys"].items() if k.startswith("encoder.")}
    with torch.device("meta"):
        enc = HybridEncoder(eval_spatial_size=(640, 640), **REFERENCE_ENCODERS[model])
    mine = {k: list(v.shape) for k, v in enc.state_dict().items()}
    assert set(mine) == set(keys)  # the reference's names, no renaming
    assert all(mine[k] == keys[k] for k in mine)
    trainable = sum(p.numel() for p in enc.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in enc.parameters())
    assert trainable == sum(math.prod(v) for k, v in keys.items() if not k.endswith(STATS))
