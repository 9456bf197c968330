"""RT-DETR's CCFM blocks (sod2/layers/rep_blocks.py): ConvNormAct, RepVggBlock (and its deploy
fusion), CSPRepLayer. Expected values are written out with torch.nn.functional and explicit
BatchNorm formulas here, not with the blocks themselves."""
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sod2.layers import ConvNormAct, CSPRepLayer, RepVggBlock
from sod2.layers.rep_blocks import get_rep_activation

from ..norms import bn_eval, randomize_norms


def test_activations():
    x = torch.linspace(-4, 4, 41)
    gelu = 0.5 * x * (1 + torch.erf(x / math.sqrt(2.0)))  # exact GELU, not the tanh form
    assert torch.allclose(get_rep_activation("gelu")(x.clone()), gelu, atol=1e-6)
    assert torch.allclose(get_rep_activation("silu")(x.clone()), x * torch.sigmoid(x), atol=1e-6)
    assert torch.equal(get_rep_activation("relu")(x.clone()), x.clamp(min=0))
    assert torch.equal(get_rep_activation(None)(x), x)
    with pytest.raises(ValueError):
        get_rep_activation("mish")


@pytest.mark.parametrize("k,stride,size,out", [(1, 1, 9, 9), (3, 1, 9, 9), (3, 2, 9, 5), (3, 2, 8, 4)])
def test_conv_norm_act_matches_formula(k, stride, size, out):
    torch.manual_seed(0)
    m = ConvNormAct(4, 6, k, stride, act="silu").eval()
    randomize_norms(m)
    x = torch.randn(2, 4, size, size)
    y = m(x)
    assert y.shape == (2, 6, out, out)
    assert m.conv.bias is None
    expected = bn_eval(F.conv2d(x, m.conv.weight, stride=stride, padding=(k - 1) // 2), m.norm)
    assert torch.allclose(y, F.silu(expected), atol=1e-5)


def test_repvgg_block_matches_formula_train_and_eval():
    torch.manual_seed(0)
    m = RepVggBlock(5, 7, act="relu")
    randomize_norms(m)
    x = torch.randn(3, 5, 6, 8)
    # eval: running statistics
    m.eval()
    b3 = bn_eval(F.conv2d(x, m.conv1.conv.weight, padding=1), m.conv1.norm)
    b1 = bn_eval(F.conv2d(x, m.conv2.conv.weight), m.conv2.norm)
    assert m.conv1.conv.weight.shape == (7, 5, 3, 3) and m.conv2.conv.weight.shape == (7, 5, 1, 1)
    assert torch.allclose(m(x), F.relu(b3 + b1), atol=1e-5)
    # train: batch statistics (biased variance), per branch
    m.train()

    def bn_batch(z, bn):
        mean = z.mean(dim=(0, 2, 3), keepdim=True)
        var = z.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + bn.eps) * bn.weight.reshape(1, -1, 1, 1) + bn.bias.reshape(1, -1, 1, 1)

    t3 = bn_batch(F.conv2d(x, m.conv1.conv.weight, padding=1), m.conv1.norm)
    t1 = bn_batch(F.conv2d(x, m.conv2.conv.weight), m.conv2.norm)
    assert torch.allclose(m(x), F.relu(t3 + t1), atol=1e-4)


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_repvgg_deploy_fusion_is_equivalent(norm):
    torch.manual_seed(1)
    m = RepVggBlock(6, 4, act="silu", norm=norm)
    randomize_norms(m, seed=3)
    m.eval()
    x = torch.randn(2, 6, 7, 5)
    before = m(x)
    kernel, bias = m.get_equivalent_kernel_bias()
    # hand fusion: per output channel c, s = gamma / sqrt(var + eps)
    s3 = m.conv1.norm.weight / torch.sqrt(m.conv1.norm.running_var + m.conv1.norm.eps)
    s1 = m.conv2.norm.weight / torch.sqrt(m.conv2.norm.running_var + m.conv2.norm.eps)
    k_hand = m.conv1.conv.weight * s3[:, None, None, None]
    k_hand[:, :, 1, 1] += m.conv2.conv.weight[:, :, 0, 0] * s1[:, None]  # the 1x1 sits at the centre
    b_hand = (m.conv1.norm.bias - m.conv1.norm.running_mean * s3) + (m.conv2.norm.bias - m.conv2.norm.running_mean * s1)
    assert torch.allclose(kernel, k_hand, atol=1e-6) and torch.allclose(bias, b_hand, atol=1e-6)

    m.convert_to_deploy()
    assert isinstance(m.conv, nn.Conv2d) and m.conv.kernel_size == (3, 3) and m.conv.bias is not None
    after = m(x)
    assert torch.allclose(before, after, atol=1e-5)
    # the fused conv alone is used: changing a branch no longer changes the output...
    with torch.no_grad():
        m.conv2.conv.weight.add_(1.0)
    assert torch.allclose(m(x), after)
    # ...until the fusion is refreshed
    m.convert_to_deploy()
    assert not torch.allclose(m(x), after, atol=1e-3)


def test_csp_rep_layer_structure_and_forward():
    torch.manual_seed(0)
    full = CSPRepLayer(8, 4, num_blocks=3, expansion=1.0, act="silu")
    half = CSPRepLayer(8, 4, num_blocks=2, expansion=0.5, act="silu")
    assert isinstance(full.conv3, nn.Identity)  # hidden == out: no conv3 parameters
    assert isinstance(half.conv3, ConvNormAct) and half.conv3.conv.weight.shape == (4, 2, 1, 1)
    assert len(full.bottlenecks) == 3 and len(half.bottlenecks) == 2
    assert full.conv1.conv.weight.shape == (4, 8, 1, 1) and half.conv1.conv.weight.shape == (2, 8, 1, 1)
    assert all(isinstance(b, RepVggBlock) for b in half.bottlenecks)
    x = torch.randn(2, 8, 5, 6)
    for m in (full, half):
        randomize_norms(m)
        m.eval()
        # the two branches are ADDED: conv3(RepVGG^n(conv1(x)) + conv2(x))
        a = m.conv1(x)
        for block in m.bottlenecks:
            a = block(a)
        expected = m.conv3(a + m.conv2(x))
        y = m(x)
        assert y.shape == (2, 4, 5, 6)
        assert torch.allclose(y, expected, atol=1e-6)
    # conv1/conv2 are 1x1 conv + BN + SiLU
    c = full.conv2
    assert torch.allclose(c(x), F.silu(bn_eval(F.conv2d(x, c.conv.weight), c.norm)), atol=1e-5)
