"""ResNet-vd (the "bag of tricks" ResNet-D with a deep stem), RT-DETR's PResNet backbone, as a
Detectron2 ``ResNet``.

It is Detectron2's own ResNet (``detectron2.modeling.backbone.resnet``: ``ResNet``,
``BasicBlock``, ``BottleneckBlock``, its ``make_default_stages``, ``freeze`` and
``output_shape``) with two changes taken from the reference (lyuwenyu/RT-DETR,
``rtdetr_pytorch/src/nn/backbone/presnet.py``, variant 'd'; facts in the project's spec, B.2):

* the stem is :class:`DeepStem`: three 3x3 conv-norm-ReLU (3 -> 32 stride 2, 32 -> 32,
  32 -> 64) then a 3x3 stride-2 max-pool, stride 4 in all;
* the projection shortcut of each stage's first block: with stride 2 it is
  :class:`AvgPoolShortcut` (2x2 average pool, ceil mode, then a 1x1 stride-1 conv + norm)
  instead of a strided 1x1 conv; with stride 1 (res2) it stays a 1x1 conv + norm, and
  R18/R34's first res2 block gets one too although its input and output widths agree (64).

Bottleneck blocks carry the stride on the 3x3 conv (``stride_in_1x1=False``), as the reference.

Parameter names are Detectron2's (``stem.conv1_1.weight``, ``res3.0.conv2.norm.weight``,
``res3.0.shortcut.conv.weight``, ...); :func:`presnet_key_to_sod2` maps the reference's names
onto them.
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Sequence, Union

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.layers import CNNBlockBase, Conv2d, FrozenBatchNorm2d, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BottleneckBlock, ResNet
from torch import nn
from torch.nn import functional as F

__all__ = ["DeepStem", "AvgPoolShortcut", "AffineFrozenBatchNorm2d", "ResNetVd", "RESNET_VD_DEPTHS", "presnet_key_to_sod2"]

RESNET_VD_DEPTHS = (18, 34, 50, 101)
_NormArg = Union[str, Callable[[int], nn.Module]]


class DeepStem(CNNBlockBase):
    """The ResNet-C/D stem: ``conv1_1`` 3x3 stride 2 in -> out/2, ``conv1_2`` 3x3 out/2 -> out/2,
    ``conv1_3`` 3x3 out/2 -> out, each conv (no bias) + norm + ReLU, then max-pool 3x3 stride 2
    padding 1. (N, in_channels, H, W) -> (N, out_channels, ceil(H / 4), ceil(W / 4)) for even
    H, W. ``freeze()`` (from ``CNNBlockBase``) freezes the parameters and the norms.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: _NormArg = "BN"):
        super().__init__(in_channels, out_channels, 4)
        mid = out_channels // 2
        self.conv1_1 = Conv2d(in_channels, mid, kernel_size=3, stride=2, padding=1, bias=False,
                              norm=get_norm(norm, mid))
        self.conv1_2 = Conv2d(mid, mid, kernel_size=3, stride=1, padding=1, bias=False, norm=get_norm(norm, mid))
        self.conv1_3 = Conv2d(mid, out_channels, kernel_size=3, stride=1, padding=1, bias=False,
                              norm=get_norm(norm, out_channels))
        for layer in (self.conv1_1, self.conv1_2, self.conv1_3):
            weight_init.c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1_1(x))
        x = F.relu_(self.conv1_2(x))
        x = F.relu_(self.conv1_3(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class AvgPoolShortcut(nn.Module):
    """ResNet-D projection shortcut: ``pool`` (AvgPool2d 2x2 stride 2, ceil mode, padding 0) then
    ``conv`` (1x1 stride 1, no bias, with norm, no activation). Averaging before the 1x1 conv
    lets every input position reach the shortcut, where a strided 1x1 conv drops 3 of 4.
    (N, in_channels, H, W) -> (N, out_channels, ceil(H / 2), ceil(W / 2)).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: _NormArg = "BN"):
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, 0, ceil_mode=True)
        self.conv = Conv2d(in_channels, out_channels, kernel_size=1, stride=1, bias=False,
                           norm=get_norm(norm, out_channels))
        weight_init.c2_msra_fill(self.conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class AffineFrozenBatchNorm2d(FrozenBatchNorm2d):
    """Detectron2's ``FrozenBatchNorm2d`` that always computes ``x * scale + bias`` with
    ``scale = weight / sqrt(running_var + eps)``, ``bias = bias - running_mean * scale``, as the
    reference's frozen BN does. Detectron2's calls ``F.batch_norm`` when no gradient is needed,
    which rounds differently by a few ulps per layer; through ~50 layers that is enough to swap
    near-equal anchor scores in RT-DETR's top-K query selection, so float32 inference would not
    reproduce the reference's detections. Same buffers and state-dict names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        bias = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1).to(x.dtype) + bias.reshape(1, -1, 1, 1).to(x.dtype)


@BACKBONE_REGISTRY.register()
class ResNetVd(ResNet):
    """ResNet-vd 18/34/50/101 (RT-DETR's PResNet variant 'd') as a Detectron2 ``ResNet``.

    Stages ``res2``..``res5`` have strides 4/8/16/32 and widths 64/128/256/512 (R18/R34,
    ``BasicBlock``) or 256/512/1024/2048 (R50/R101, ``BottleneckBlock``); block counts
    [2,2,2,2], [3,4,6,3], [3,4,6,3], [3,4,23,3].

    Args:
        depth: 18, 34, 50 or 101.
        out_features: stage names to return, from "stem", "res2".."res5"; stages after the last
            one named are not built (Detectron2's ResNet behaviour).
        freeze_at: Detectron2's meaning: 0 freezes nothing, 1 the stem, k > 1 the stem and
            stages res2..res(k). Frozen parts get ``requires_grad=False`` and their norms become
            ``FrozenBatchNorm2d``. The reference's ``freeze_at=0`` (stem only, R50/R101) is 1
            here; its ``freeze_at=-1`` (nothing, R18/R34) is 0.
        norm: Detectron2 norm name for every conv: "FrozenBN" for the reference's
            ``freeze_norm=True`` (R50/R101: BN statistics and affine parameters are buffers),
            "BN" or "SyncBN" for ``freeze_norm=False`` (R18/R34; the reference converts its BNs to
            SyncBatchNorm under DDP).
        in_channels: image channels.
        widths: output widths of res2..res5 (None: the depth's standard 64-128-256-512 or
            256-512-1024-2048); the stem is ``widths[0]`` wide for BasicBlock nets and 64 (the
            standard) for bottleneck nets, whose bottleneck width is a quarter of the output.
            Small widths give CPU-sized ResNet-vd models (the synthetic configs).

    The defaults are the reference R50-vd's (stem frozen, frozen norms).

    forward: (N, in_channels, H, W) -> {name: (N, C_name, H / s, W / s)} (ceil for sizes that
    are not multiples of 32). ``size_divisibility`` is 32 because RT-DETR's hybrid encoder
    needs each level to be exactly twice the next coarser one.
    """

    def __init__(self, depth: int = 50, out_features: Sequence[str] = ("res3", "res4", "res5"),
                 freeze_at: int = 1, norm: _NormArg = "FrozenBN", in_channels: int = 3,
                 widths: Optional[Sequence[int]] = None):
        if depth not in RESNET_VD_DEPTHS:
            raise ValueError(f"ResNet-vd depth must be one of {RESNET_VD_DEPTHS}, got {depth}")
        if norm == "FrozenBN":  # the reference's frozen-BN arithmetic (AffineFrozenBatchNorm2d)
            norm = AffineFrozenBatchNorm2d
        stage_kwargs = {"norm": norm}
        if depth >= 50:
            stage_kwargs["stride_in_1x1"] = False
        if widths is None:
            stem = DeepStem(in_channels, 64, norm=norm)
            stages = ResNet.make_default_stages(depth, **stage_kwargs)
        else:
            if len(widths) != 4:
                raise ValueError(f"ResNet-vd widths: 4 values (res2..res5), got {list(widths)}")
            stem_width = widths[0] if depth < 50 else 64
            stem = DeepStem(in_channels, stem_width, norm=norm)
            blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth]
            block_class = BasicBlock if depth < 50 else BottleneckBlock
            stages, prev = [], stem_width
            for i, (n, w) in enumerate(zip(blocks, widths)):
                extra = {"bottleneck_channels": w // 4} if depth >= 50 else {}
                stages.append(ResNet.make_stage(block_class=block_class, num_blocks=n,
                                                stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1),
                                                in_channels=prev, out_channels=w, **extra, **stage_kwargs))
                prev = w
        for blocks in stages:
            first = blocks[0]
            if first.stride == 2:
                first.shortcut = AvgPoolShortcut(first.in_channels, first.out_channels, norm=norm)
            elif first.shortcut is None:  # R18/R34 res2: projection even though 64 -> 64
                first.shortcut = Conv2d(first.in_channels, first.out_channels, kernel_size=1, bias=False,
                                        norm=get_norm(norm, first.out_channels))
                weight_init.c2_msra_fill(first.shortcut)
        super().__init__(stem, stages, out_features=list(out_features), freeze_at=freeze_at)
        self.depth = depth

    @property
    def size_divisibility(self) -> int:
        return 32


_BRANCHES = {"branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3"}


def _conv_norm_tail(tail: str) -> str:
    """The reference ``ConvNormLayer`` holds ``conv`` and ``norm``; Detectron2's ``Conv2d`` is
    the conv itself with ``norm`` inside: ``conv.weight`` -> ``weight``, ``norm.*`` stays."""
    if tail == "conv.weight":
        return "weight"
    if tail.startswith("norm."):
        return tail
    raise KeyError(tail)


def presnet_key_to_sod2(key: str) -> str:
    """Map a reference PResNet state-dict key (relative to the backbone, e.g.
    ``res_layers.1.blocks.0.short.conv.conv.weight``) to :class:`ResNetVd`'s
    (``res3.0.shortcut.conv.weight``). ``conv1.conv1_k`` -> ``stem.conv1_k``;
    ``res_layers.i.blocks.j`` -> ``res<i+2>.j``; ``branch2a/b/c`` -> ``conv1/2/3``; ``short``
    -> ``shortcut`` (its avg-pool form ``short.conv.*`` -> ``shortcut.conv.*``). Raises KeyError
    for a key that is not part of a PResNet-vd."""
    try:
        m = re.fullmatch(r"conv1\.(conv1_[123])\.(.+)", key)
        if m:
            return f"stem.{m[1]}.{_conv_norm_tail(m[2])}"
        m = re.fullmatch(r"res_layers\.(\d+)\.blocks\.(\d+)\.(branch2[abc]|short)\.(.+)", key)
        if m:
            prefix = f"res{int(m[1]) + 2}.{m[2]}."
            part, tail = m[3], m[4]
            if part in _BRANCHES:
                return prefix + f"{_BRANCHES[part]}.{_conv_norm_tail(tail)}"
            if tail.startswith(("conv.conv.", "conv.norm.")):  # avg-pool shortcut: pool, conv
                return prefix + f"shortcut.conv.{_conv_norm_tail(tail[len('conv.'):])}"
            return prefix + f"shortcut.{_conv_norm_tail(tail)}"
    except KeyError:
        pass
    raise KeyError(f"not a PResNet-vd key: {key!r}")
