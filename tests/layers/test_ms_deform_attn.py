"""Multi-scale deformable attention: the grid_sample core against a naive per-point bilinear
loop written here (several non-square levels, points outside the maps), hand values, the
box-relative location formula, the joint softmax, the reference initialisation, gradients,
and (marker ``cuda``) CUDA against CPU."""
import math

import pytest
import torch
from torch import nn

import sod2.layers.ms_deform_attn as msda_module
from sod2.layers.ms_deform_attn import DeformableAttentionOutput, MSDeformableAttention, ms_deform_attn

SHAPES = [(3, 5), (4, 2), (1, 1), (2, 3)]  # non-square levels, a 1x1 level


def naive_ms_deform_attn(value, shapes, locations, weights):
    """Per sampled point: the four neighbouring pixel centres of (x W - 0.5, y H - 0.5),
    bilinear weights, pixels outside the map count as zero."""
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = locations.shape
    starts = [0]
    for h, w in shapes:
        starts.append(starts[-1] + h * w)
    out = torch.zeros(B, Q, M, D, dtype=value.dtype)
    for b in range(B):
        for q in range(Q):
            for m in range(M):
                for lvl, (h, w) in enumerate(shapes):
                    for p in range(P):
                        x = locations[b, q, m, lvl, p, 0].item() * w - 0.5
                        y = locations[b, q, m, lvl, p, 1].item() * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(D, dtype=value.dtype)
                        for xi, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                            for yi, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                                if 0 <= xi < w and 0 <= yi < h:
                                    sample += wx * wy * value[b, starts[lvl] + yi * w + xi, m]
                        out[b, q, m] += weights[b, q, m, lvl, p] * sample
    return out.reshape(B, Q, M * D)


def random_inputs(B=2, Q=3, M=2, D=3, P=2, shapes=SHAPES, low=-0.3, high=1.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    S = sum(h * w for h, w in shapes)
    value = torch.randn(B, S, M, D, generator=g, dtype=torch.float64)
    locations = low + (high - low) * torch.rand(B, Q, M, len(shapes), P, 2, generator=g, dtype=torch.float64)
    weights = torch.rand(B, Q, M, len(shapes), P, generator=g, dtype=torch.float64)
    return value, locations, weights


def test_core_matches_naive_bilinear_loop():
    value, locations, weights = random_inputs()
    # some points must really lie outside, partly and entirely, for the test to mean anything
    assert (locations < 0).any() and (locations > 1).any()
    out = ms_deform_attn(value, SHAPES, locations, weights)
    assert out.shape == (2, 3, 2 * 3)
    torch.testing.assert_close(out, naive_ms_deform_attn(value, SHAPES, locations, weights))
    # spatial shapes as an (L, 2) LongTensor
    torch.testing.assert_close(ms_deform_attn(value, torch.tensor(SHAPES), locations, weights), out)


def test_core_hand_values():
    # one level 2 (H) x 3 (W), one head, D = 1, pixel value = 10 * row + col
    value = torch.tensor([0.0, 1.0, 2.0, 10.0, 11.0, 12.0]).view(1, 6, 1, 1)
    locs = torch.tensor([
        [(1.5 / 3, 0.5 / 2)],   # centre of pixel (row 0, col 1) -> 1
        [(1.0 / 3, 1.0 / 2)],   # midway between the 4 pixels rows 0-1, cols 0-1 -> 5.5
        [(1.0, 0.0)],           # the top-right corner: 1/4 of pixel (0, 2), rest outside -> 0.5
        [(1.0, 1.0)],           # bottom-right corner: 1/4 of pixel (1, 2) -> 3
        [(1.2, 0.5)],           # right of the map by more than half a pixel -> 0
        [(2.5 / 3, -0.1)],      # above the map: col 2 centre, y = -0.7 px -> 0.3 * 2 = 0.6
    ], dtype=torch.float32).view(1, 6, 1, 1, 1, 2)
    weights = torch.ones(1, 6, 1, 1, 1)
    out = ms_deform_attn(value, [(2, 3)], locs, weights).flatten()
    torch.testing.assert_close(out, torch.tensor([1.0, 5.5, 0.5, 3.0, 0.0, 0.6]))


def test_points_outside_contribute_nothing():
    value, locations, weights = random_inputs()
    far = locations.clone()
    far[..., 0] = torch.where(far[..., 0] > 0.5, 1.0 + 1.0, -1.0)  # beyond a full pixel of every level
    assert ms_deform_attn(value, SHAPES, far, weights).abs().max() == 0
    # moving one level's points outside removes exactly that level's share
    part = locations.clone()
    part[:, :, :, 1, :, 1] = 5.0
    w_without = weights.clone()
    w_without[:, :, :, 1] = 0
    torch.testing.assert_close(ms_deform_attn(value, SHAPES, part, weights),
                               ms_deform_attn(value, SHAPES, locations, w_without))


def test_core_rejects_inconsistent_shapes():
    value, locations, weights = random_inputs()
    with pytest.raises(ValueError):
        ms_deform_attn(value, SHAPES[:-1] + [(2, 2)], locations, weights)
    with pytest.raises(ValueError):
        ms_deform_attn(value, SHAPES[:-1], locations[:, :, :, :-1], weights[:, :, :, :-1])


def test_core_gradients():
    value, locations, weights = random_inputs(B=1, Q=2, M=2, D=2, P=2, shapes=[(3, 4), (2, 1)], seed=1)
    for t in (value, locations, weights):
        t.requires_grad_()
    assert torch.autograd.gradcheck(lambda v, loc, w: ms_deform_attn(v, [(3, 4), (2, 1)], loc, w),
                                    (value, locations, weights))


def _identity(linear):
    with torch.no_grad():
        linear.weight.copy_(torch.eye(linear.out_features, linear.in_features))
        linear.bias.zero_()


def test_module_location_formula_hand_value():
    """One head, one level, one point: location = ref_xy + offset / P * ref_wh / 2."""
    attn = MSDeformableAttention(embed_dim=2, num_heads=1, num_levels=1, num_points=1)
    _identity(attn.value_proj)
    _identity(attn.output_proj)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, -1.0]))
    value = torch.arange(16.0).view(1, 16, 1).repeat(1, 1, 2)  # 4 x 4 map, pixel = 4 row + col
    value[..., 1] *= -1
    query = torch.zeros(1, 1, 2)
    ref = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])
    out = attn(query, ref, value, [(4, 4)])
    assert isinstance(out, DeformableAttentionOutput)
    # location (0.5 + 1 * 0.25, 0.5 - 1 * 0.25) = (0.75, 0.25) = pixel coords (2.5, 0.5): the
    # mean of pixels (row 0, cols 2, 3) and (row 1, cols 2, 3) = (2 + 3 + 6 + 7) / 4
    torch.testing.assert_close(out.output, torch.tensor([[[4.5, -4.5]]]))
    torch.testing.assert_close(out.offsets, torch.tensor([1.0, -1.0]).view(1, 1, 1, 1, 1, 2))
    torch.testing.assert_close(out.attention, torch.ones(1, 1, 1, 1, 1))


def test_module_locations_offsets_and_joint_softmax(monkeypatch):
    torch.manual_seed(0)
    M, L, P, C = 2, 3, 2, 8
    attn = MSDeformableAttention(embed_dim=C, num_heads=M, num_levels=L, num_points=P)
    nn.init.normal_(attn.sampling_offsets.weight)
    nn.init.normal_(attn.attention_weights.weight)
    nn.init.normal_(attn.attention_weights.bias)
    shapes = [(4, 3), (2, 2), (1, 2)]
    B, Q = 2, 3
    query = torch.randn(B, Q, C)
    ref = torch.rand(B, Q, 4) * 0.8 + 0.1
    value = torch.randn(B, sum(h * w for h, w in shapes), C)
    seen = {}

    def spy(v, s, loc, w):
        seen["loc"], seen["w"] = loc, w
        return ms_deform_attn(v, s, loc, w)

    monkeypatch.setattr(msda_module, "ms_deform_attn", spy)
    out = attn(query, ref, value, shapes)
    assert out.output.shape == (B, Q, C)
    # offsets: the raw Linear output in the (M, L, P, xy) layout
    raw = query @ attn.sampling_offsets.weight.T + attn.sampling_offsets.bias
    logits = query @ attn.attention_weights.weight.T + attn.attention_weights.bias
    assert out.offsets.shape == (B, Q, M, L, P, 2)
    for b, q, m, lvl, p, xy in [(0, 0, 0, 0, 0, 0), (1, 2, 1, 2, 1, 1), (0, 1, 1, 0, 1, 0), (1, 0, 0, 1, 0, 1)]:
        k = ((m * L + lvl) * P + p) * 2 + xy
        assert torch.isclose(out.offsets[b, q, m, lvl, p, xy], raw[b, q, k])
        expected = ref[b, q, xy] + raw[b, q, k] / P * ref[b, q, 2 + xy] * 0.5
        assert torch.isclose(seen["loc"][b, q, m, lvl, p, xy], expected)
        # softmax over the L * P entries of head m, by hand
        head = [logits[b, q, (m * L + l2) * P + p2].item() for l2 in range(L) for p2 in range(P)]
        a = math.exp(logits[b, q, (m * L + lvl) * P + p].item()) / sum(math.exp(h) for h in head)
        assert out.attention[b, q, m, lvl, p].item() == pytest.approx(a, rel=1e-5)
    torch.testing.assert_close(out.attention.sum(dim=(3, 4)), torch.ones(B, Q, M))
    assert seen["w"] is out.attention
    # a per-level (B, Q, L, 4) reference equal on every level gives the same result
    out_l = attn(query, ref[:, :, None].expand(B, Q, L, 4), value, shapes)
    torch.testing.assert_close(out_l.output, out.output)


def test_module_init_is_the_reference_pattern():
    attn = MSDeformableAttention(embed_dim=256, num_heads=8, num_levels=3, num_points=4)
    # the reference parameter shapes (rtdetr_pytorch cross_attn with 3 levels)
    shapes = {k: tuple(v.shape) for k, v in attn.state_dict().items()}
    assert shapes == {
        "sampling_offsets.weight": (192, 256), "sampling_offsets.bias": (192,),
        "attention_weights.weight": (96, 256), "attention_weights.bias": (96,),
        "value_proj.weight": (256, 256), "value_proj.bias": (256,),
        "output_proj.weight": (256, 256), "output_proj.bias": (256,),
    }
    assert attn.sampling_offsets.weight.abs().max() == 0
    bias = attn.sampling_offsets.bias.view(8, 3, 4, 2)
    # head h: direction at angle 2 pi h / 8, larger component scaled to 1
    directions = torch.tensor([(1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1)],
                              dtype=torch.float32)
    for p in range(4):
        for lvl in range(3):
            torch.testing.assert_close(bias[:, lvl, p], directions * (p + 1), atol=1e-5, rtol=0)
    assert attn.attention_weights.weight.abs().max() == 0 and attn.attention_weights.bias.abs().max() == 0
    for proj in (attn.value_proj, attn.output_proj):
        assert proj.bias.abs().max() == 0
        bound = math.sqrt(6.0 / (256 + 256))  # xavier-uniform; PyTorch's default bound is 1/16
        assert 1.0 / 16 < proj.weight.abs().max() <= bound
    # uniform attention at init: 1 / (L * P) everywhere
    out = attn(torch.randn(1, 2, 256), torch.full((1, 2, 4), 0.5), torch.randn(1, 21, 256), [(4, 4), (2, 2), (1, 1)])
    torch.testing.assert_close(out.attention, torch.full((1, 2, 8, 3, 4), 1.0 / 12))


def test_module_gradient_reaches_every_parameter_and_input():
    torch.manual_seed(0)
    attn = MSDeformableAttention(embed_dim=8, num_heads=2, num_levels=2, num_points=2)
    # the query reaches the output only through these two (zero at init)
    nn.init.normal_(attn.sampling_offsets.weight, std=0.1)
    nn.init.normal_(attn.attention_weights.weight, std=0.1)
    shapes = [(3, 4), (2, 2)]
    query = torch.randn(2, 3, 8, requires_grad=True)
    ref = (torch.rand(2, 3, 4) * 0.6 + 0.2).requires_grad_()
    value = torch.randn(2, 16, 8, requires_grad=True)
    out = attn(query, ref, value, shapes)
    (out.output ** 2).sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    for t in (query, ref, value):
        assert t.grad.abs().sum() > 0


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    value, locations, weights = random_inputs(B=2, Q=50, M=4, D=8, P=4, shapes=[(20, 30), (10, 15), (5, 8)])
    for t in (value, locations, weights):
        t.requires_grad_()
    out = ms_deform_attn(value, [(20, 30), (10, 15), (5, 8)], locations, weights)
    grad = torch.randn_like(out)
    cpu_grads = torch.autograd.grad(out, (value, locations, weights), grad)
    cuda_in = [t.detach().cuda().requires_grad_() for t in (value, locations, weights)]
    out_cuda = ms_deform_attn(cuda_in[0], [(20, 30), (10, 15), (5, 8)], cuda_in[1], cuda_in[2])
    cuda_grads = torch.autograd.grad(out_cuda, cuda_in, grad.cuda())
    torch.testing.assert_close(out_cuda.cpu(), out)
    for g_cuda, g_cpu in zip(cuda_grads, cpu_grads):
        torch.testing.assert_close(g_cuda.cpu(), g_cpu)
