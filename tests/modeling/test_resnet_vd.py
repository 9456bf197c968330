"""ResNet-vd (sod2/modeling/backbone/resnet_vd.py): Detectron2's ResNet with the deep stem and
the average-pool shortcut. Shapes and strides, the structure (reused Detectron2 blocks, stride
on the 3x3, R18/R34's res2 projection), the forward of the stem / shortcut / a downsampling
block against hand-written functional code, freezing, and the parameter names, shapes and
counts against the reference's (tests/fixtures/reference-keys/rtdetr_*.json).

About the reference counts: the JSON's ``params`` is the reference README's count, i.e. every
``nn.Parameter`` of the model whether trainable or not. In R50/R101 the backbone uses
FrozenBatchNorm2d, whose weight and bias are buffers (not counted), while the frozen stem's
convs are parameters with ``requires_grad=False`` (counted). So for R50/R101 the backbone's
trainable count is the sum over the conv weights outside the stem, and its parameter count is
the sum over all conv weights; for R18/R34 (plain BN, nothing frozen) both are the sum over
all backbone keys except the BN statistics."""
import json
import math
from pathlib import Path

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from torch import nn
from torch.nn import functional as F

from sod2.modeling.backbone import AvgPoolShortcut, DeepStem, ResNetVd, presnet_key_to_sod2

from ..norms import bn_eval, randomize_norms

REPO = Path(__file__).resolve().parents[2]
REF_KEYS = REPO / "tests" / "fixtures" / "reference-keys"
STATS = ("running_mean", "running_var", "num_batches_tracked")
# (depth, JSON model, reference settings mapped to sod2's: freeze_at, norm)
DEPTHS = {18: ("rtdetr_r18vd", 0, "BN"), 34: ("rtdetr_r34vd", 0, "BN"),
          50: ("rtdetr_r50vd", 1, "FrozenBN"), 101: ("rtdetr_r101vd", 1, "FrozenBN")}
WIDTHS = {18: (64, 128, 256, 512), 34: (64, 128, 256, 512), 50: (256, 512, 1024, 2048),
          101: (256, 512, 1024, 2048)}
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _ref_keys(model):
    return json.loads((REF_KEYS / f"{model}.json").read_text())


def _on_meta(**kwargs):
    """Build on the meta device: names, shapes and counts without allocating R101's weights."""
    with torch.device("meta"):
        return ResNetVd(**kwargs)


def _naive_avgpool_ceil(x):
    """2x2 stride-2 average with ceil mode, no padding: a window cut by the border averages
    only the elements inside the map."""
    n, c, h, w = x.shape
    out = torch.zeros(n, c, math.ceil(h / 2), math.ceil(w / 2))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            win = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            out[:, :, i, j] = win.sum(dim=(2, 3)) / (win.shape[2] * win.shape[3])
    return out


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_output_shapes_and_strides(depth):
    torch.manual_seed(0)
    _, freeze_at, norm = DEPTHS[depth]
    m = ResNetVd(depth, freeze_at=freeze_at, norm=norm).eval()
    assert isinstance(m, ResNet)
    shapes = m.output_shape()
    assert list(shapes) == ["res3", "res4", "res5"]
    assert [s.stride for s in shapes.values()] == [8, 16, 32]
    assert [s.channels for s in shapes.values()] == list(WIDTHS[depth][1:])
    assert m.size_divisibility == 32
    with torch.no_grad():
        out = m(torch.randn(1, 3, 64, 96))
    for (name, y), c in zip(out.items(), WIDTHS[depth][1:]):
        s = shapes[name].stride
        assert y.shape == (1, c, 64 // s, 96 // s)


def test_all_outputs_and_odd_sizes():
    torch.manual_seed(0)
    m = ResNetVd(18, out_features=("stem", "res2", "res3", "res4", "res5"), freeze_at=0, norm="BN").eval()
    assert [s.stride for s in m.output_shape().values()] == [4, 4, 8, 16, 32]
    with torch.no_grad():
        out = m(torch.randn(1, 3, 70, 45))
    # every stride-2 step rounds up (padded 3x3 convs, ceil-mode pooling)
    assert [tuple(y.shape[2:]) for y in out.values()] == [(18, 12), (18, 12), (9, 6), (5, 3), (3, 2)]
    # out_features stops the network early (Detectron2's behaviour)
    assert not hasattr(ResNetVd(18, out_features=("res3",), freeze_at=0, norm="BN"), "res4")
    with pytest.raises(ValueError):
        ResNetVd(152)
    assert BACKBONE_REGISTRY.get("ResNetVd") is ResNetVd


@pytest.mark.parametrize("depth", [18, 50])
def test_structure_reuses_detectron2_blocks(depth):
    m = _on_meta(depth=depth, norm="BN", freeze_at=0)
    block_cls = BasicBlock if depth < 50 else BottleneckBlock
    assert isinstance(m.stem, DeepStem) and m.stem.stride == 4 and m.stem.out_channels == 64
    assert [tuple(c.weight.shape) for c in (m.stem.conv1_1, m.stem.conv1_2, m.stem.conv1_3)] == [
        (32, 3, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3)]
    assert [c.stride for c in (m.stem.conv1_1, m.stem.conv1_2, m.stem.conv1_3)] == [(2, 2), (1, 1), (1, 1)]
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        stage = getattr(m, name)
        assert len(stage) == BLOCKS[depth][i]
        assert all(type(b) is block_cls for b in stage)
        first = stage[0]
        if name == "res2":
            # stride 1: a plain 1x1 projection, also for R18 where in == out == 64
            assert first.stride == 1 and isinstance(first.shortcut, nn.Conv2d)
            assert first.shortcut.kernel_size == (1, 1) and first.shortcut.stride == (1, 1)
            assert first.shortcut.norm is not None
        else:
            assert first.stride == 2 and isinstance(first.shortcut, AvgPoolShortcut)
            assert first.shortcut.pool.ceil_mode and first.shortcut.pool.kernel_size == 2
            assert first.shortcut.conv.stride == (1, 1) and first.shortcut.conv.kernel_size == (1, 1)
            if depth >= 50:  # stride on the 3x3 conv
                assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
            else:
                assert first.conv1.stride == (2, 2)
        assert all(b.shortcut is None for b in stage[1:])


def test_deep_stem_matches_functional_code():
    torch.manual_seed(0)
    stem = DeepStem(3, 64, norm="BN")
    randomize_norms(stem, spread=0.1, min_var=0.5)
    stem.eval()
    x = torch.randn(2, 3, 32, 40)
    h = x
    for conv, stride in ((stem.conv1_1, 2), (stem.conv1_2, 1), (stem.conv1_3, 1)):
        h = F.relu(bn_eval(F.conv2d(h, conv.weight, stride=stride, padding=1), conv.norm))
    expected = F.max_pool2d(h, 3, 2, 1)
    y = stem(x)
    assert y.shape == (2, 64, 8, 10)
    assert torch.allclose(y, expected, atol=1e-5)


def test_avgpool_shortcut_and_downsampling_block_match_functional_code():
    torch.manual_seed(0)
    m = ResNetVd(50, out_features=("res3",), freeze_at=0, norm="BN")
    randomize_norms(m, spread=0.1, min_var=0.5)
    m.eval()
    block = m.res3[0]
    x = torch.randn(1, 256, 9, 7)  # odd sizes: the pooling windows at the border are cut
    sc = block.shortcut
    pooled = _naive_avgpool_ceil(x)
    assert pooled.shape == (1, 256, 5, 4)
    assert torch.allclose(sc.pool(x), pooled, atol=1e-6)
    short = bn_eval(F.conv2d(pooled, sc.conv.weight), sc.conv.norm)
    assert torch.allclose(sc(x), short, atol=1e-5)
    h = F.relu(bn_eval(F.conv2d(x, block.conv1.weight), block.conv1.norm))
    h = F.relu(bn_eval(F.conv2d(h, block.conv2.weight, stride=2, padding=1), block.conv2.norm))
    h = bn_eval(F.conv2d(h, block.conv3.weight), block.conv3.norm)
    expected = F.relu(h + short)
    with torch.no_grad():
        y = block(x.clone())
    assert y.shape == (1, 512, 5, 4)
    assert torch.allclose(y, expected, atol=1e-4)


def test_freezing():
    def trainable(module):
        return [p.requires_grad for p in module.parameters()]

    nothing = ResNetVd(18, freeze_at=0, norm="BN")
    assert all(trainable(nothing))
    assert not any(isinstance(x, FrozenBatchNorm2d) for x in nothing.modules())

    stem_only = ResNetVd(18, freeze_at=1, norm="BN")  # the reference's freeze_at=0
    assert not any(trainable(stem_only.stem))
    assert all(isinstance(c.norm, FrozenBatchNorm2d) for c in (stem_only.stem.conv1_1, stem_only.stem.conv1_3))
    for name in ("res2", "res3", "res4", "res5"):
        stage = getattr(stem_only, name)
        assert all(trainable(stage))
        assert not any(isinstance(x, FrozenBatchNorm2d) for x in stage.modules())
    # gradients stop at the stem; the stem's statistics do not move in training
    stem_mean = stem_only.stem.conv1_1.norm.running_mean.clone()
    res2_mean = stem_only.res2[0].conv1.norm.running_mean.clone()
    stem_only.train()
    out = stem_only(torch.randn(2, 3, 64, 64))
    sum(y.sum() for y in out.values()).backward()
    assert all(p.grad is None for p in stem_only.stem.parameters())
    assert all(p.grad is not None for p in stem_only.res2.parameters())
    assert torch.equal(stem_only.stem.conv1_1.norm.running_mean, stem_mean)
    assert not torch.equal(stem_only.res2[0].conv1.norm.running_mean, res2_mean)

    two = ResNetVd(18, freeze_at=2, norm="BN")
    assert not any(trainable(two.stem)) and not any(trainable(two.res2)) and all(trainable(two.res3))

    # reference R50/R101: frozen norms everywhere (buffers) and the stem frozen
    r50 = _on_meta(depth=50)
    norms = [x for x in r50.modules() if isinstance(x, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    assert norms and all(isinstance(x, FrozenBatchNorm2d) for x in norms)
    assert not any(trainable(r50.stem)) and all(trainable(r50.res2))


@pytest.mark.realdata
@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_names_and_shapes_match_the_reference(depth):
    model, freeze_at, norm = DEPTHS[depth]
    ref = {k[len("backbone."):]: v for k, v in _ref_keys(model)["keys"].items() if k.startswith("backbone.")}
    mapped = {presnet_key_to_sod2(k): v for k, v in ref.items()}
    assert len(mapped) == len(ref)  # the mapping is one-to-one
    mine = {k: list(v.shape) for k, v in _on_meta(depth=depth, freeze_at=freeze_at, norm=norm).state_dict().items()}
    assert set(mine) == set(mapped)
    assert all(mine[k] == mapped[k] for k in mine)


def test_key_mapping_examples():
    assert presnet_key_to_sod2("conv1.conv1_2.conv.weight") == "stem.conv1_2.weight"
    assert presnet_key_to_sod2("conv1.conv1_3.norm.running_var") == "stem.conv1_3.norm.running_var"
    assert presnet_key_to_sod2("res_layers.0.blocks.0.short.conv.weight") == "res2.0.shortcut.weight"
    assert presnet_key_to_sod2("res_layers.0.blocks.0.short.norm.bias") == "res2.0.shortcut.norm.bias"
    assert presnet_key_to_sod2("res_layers.2.blocks.0.short.conv.conv.weight") == "res4.0.shortcut.conv.weight"
    assert presnet_key_to_sod2("res_layers.2.blocks.0.short.conv.norm.weight") == "res4.0.shortcut.conv.norm.weight"
    assert presnet_key_to_sod2("res_layers.3.blocks.2.branch2c.norm.running_mean") == "res5.2.conv3.norm.running_mean"
    assert presnet_key_to_sod2("res_layers.1.blocks.22.branch2a.conv.weight") == "res3.22.conv1.weight"
    for bad in ("fc.weight", "res_layers.0.blocks.0.branch2d.conv.weight", "conv1.conv1_1.bn.weight"):
        with pytest.raises(KeyError):
            presnet_key_to_sod2(bad)


@pytest.mark.realdata
@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_parameter_counts_match_the_reference(depth):
    model, freeze_at, norm = DEPTHS[depth]
    ref = _ref_keys(model)
    keys = {k: math.prod(v) for k, v in ref["keys"].items() if k.startswith("backbone.")}
    m = _on_meta(depth=depth, freeze_at=freeze_at, norm=norm)
    trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
    params = sum(p.numel() for p in m.parameters())
    if norm == "BN":  # R18/R34: nothing frozen, BN affine parameters trainable
        expected = sum(n for k, n in keys.items() if not k.endswith(STATS))
        assert trainable == params == expected
    else:  # R50/R101: FrozenBN (buffers), stem convs frozen but still parameters
        convs = {k: n for k, n in keys.items() if k.endswith("conv.weight")}
        assert trainable == sum(n for k, n in convs.items() if not k.startswith("backbone.conv1."))
        assert params == sum(convs.values())
        stem = sum(n for k, n in convs.items() if k.startswith("backbone.conv1."))
        assert stem == 32 * 3 * 9 + 32 * 32 * 9 + 64 * 32 * 9  # 28512
    # the JSON total is consistent with this reading: all parameters (backbone as counted
    # above) + every non-statistics encoder/decoder entry
    rest = sum(math.prod(v) for k, v in ref["keys"].items()
               if k.startswith(("encoder.", "decoder.")) and not k.endswith(STATS))
    assert params + rest == ref["params"]


def test_widths_option_builds_a_narrow_resnet_vd():
    """``widths`` keeps the vd structure (deep stem, average-pool shortcuts) at other widths;
    the standard widths give exactly the default network."""
    import torch
    from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock

    from sod2.modeling.backbone.resnet_vd import AvgPoolShortcut, ResNetVd

    small = ResNetVd(18, freeze_at=0, norm="BN", widths=(32, 64, 128, 256))
    assert small.stem.conv1_1.out_channels == 16 and small.stem.out_channels == 32
    assert isinstance(small.res3[0].shortcut, AvgPoolShortcut) and isinstance(small.res3[0], BasicBlock)
    assert small.res2[0].shortcut is not None  # the R18 res2 projection, as the standard net
    out = small(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res3": (1, 64, 8, 12), "res4": (1, 128, 4, 6), "res5": (1, 256, 2, 3)}
    assert [small.output_shape()[k].channels for k in ("res3", "res4", "res5")] == [64, 128, 256]
    for depth, std in ((18, (64, 128, 256, 512)), (50, (256, 512, 1024, 2048))):
        a, b = ResNetVd(depth, norm="BN"), ResNetVd(depth, norm="BN", widths=std)
        assert [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]
    wide = ResNetVd(50, norm="BN", widths=(128, 256, 512, 1024))
    assert isinstance(wide.res4[0], BottleneckBlock) and wide.res4[0].conv1.out_channels == 512 // 4
    import pytest
    with pytest.raises(ValueError, match="4 values"):
        ResNetVd(18, widths=(32, 64))


def test_frozen_bn_uses_the_reference_arithmetic():
    """FrozenBN in ResNet-vd computes x * scale + bias (the reference's formula) also without
    gradients, to the bit, so float32 inference reproduces the reference's rounding."""
    import torch
    from detectron2.layers import FrozenBatchNorm2d

    from sod2.modeling.backbone.resnet_vd import AffineFrozenBatchNorm2d, ResNetVd

    m = ResNetVd(50, freeze_at=1, norm="FrozenBN")
    bn = m.res3[0].conv1.norm
    assert isinstance(bn, AffineFrozenBatchNorm2d) and isinstance(m.stem.conv1_1.norm, AffineFrozenBatchNorm2d)
    g = torch.Generator().manual_seed(0)
    for name in ("weight", "bias", "running_mean"):
        getattr(bn, name).copy_(torch.randn(bn.num_features, generator=g))
    bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.1)
    x = torch.randn(2, bn.num_features, 5, 7, generator=g)
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    ref = x * scale[None, :, None, None] + (bn.bias - bn.running_mean * scale)[None, :, None, None]
    with torch.no_grad():
        assert torch.equal(bn(x), ref)
    assert set(bn.state_dict()) == set(FrozenBatchNorm2d(bn.num_features).state_dict())
