"""
Building blocks of the YOLOX family (CSPDarknet, PAFPN, decoupled head).

Every block reproduces the behaviour of Megvii's YOLOX ``network_blocks``: a conv is
Conv2d (no bias) + BatchNorm2d (eps 1e-3, momentum 0.03, the values YOLOX sets on every
BN of the model) + activation, with "same" padding ``(k - 1) // 2``. Parameter names are
sod2's own; ``sod2.utils.convert`` maps the official checkpoints onto them.

All blocks take and return (N, C, H, W) tensors.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["BN_EPS", "BN_MOMENTUM", "get_activation", "BaseConv", "DWConv", "Bottleneck",
           "CSPLayer", "SPPBottleneck", "Focus"]

BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def get_activation(name: str = "silu") -> nn.Module:
    """"silu" (default), "relu" or "lrelu" (LeakyReLU, slope 0.1); all in place."""
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "lrelu":
        return nn.LeakyReLU(0.1, inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'silu', 'relu' or 'lrelu'")


class BaseConv(nn.Module):
    """k x k conv (no bias, "same" padding) -> BatchNorm2d(eps 1e-3, momentum 0.03) -> act.

    (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int = 1,
                 groups: int = 1, bias: bool = False, act: str = "silu"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, ksize, stride, (ksize - 1) // 2,
                              groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = get_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise k x k BaseConv (groups = in_channels) then pointwise 1 x 1 BaseConv.

    (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int = 1,
                 act: str = "silu"):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, ksize, stride, groups=in_channels, act=act)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv3(depthwise: bool):
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    """1 x 1 BaseConv to ``int(out_channels * expansion)``, then a 3 x 3 conv (DWConv when
    depthwise) to out_channels; the input is added when ``shortcut`` and the channel counts
    agree. (N, in_channels, H, W) -> (N, out_channels, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, shortcut: bool = True,
                 expansion: float = 0.5, depthwise: bool = False, act: str = "silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, act=act)
        self.conv2 = _conv3(depthwise)(hidden, out_channels, 3, 1, act=act)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class CSPLayer(nn.Module):
    """Cross-stage-partial block ("C3") with ``hidden = int(out_channels * expansion)``:
    ``conv3(cat[blocks(conv1(x)), conv2(x)])`` where conv1/conv2/conv3 are 1 x 1 BaseConvs
    and ``blocks`` are ``n`` Bottlenecks (hidden -> hidden, expansion 1.0).

    (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, n: int = 1, shortcut: bool = True,
                 expansion: float = 0.5, depthwise: bool = False, act: str = "silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, act=act)
        self.conv2 = BaseConv(in_channels, hidden, 1, act=act)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1, act=act)
        self.blocks = nn.Sequential(*[Bottleneck(hidden, hidden, shortcut, 1.0, depthwise, act=act)
                                      for _ in range(n)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat([self.blocks(self.conv1(x)), self.conv2(x)], dim=1))


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: 1 x 1 BaseConv to in/2, max pools (stride 1, "same") of the
    given kernel sizes, ``cat[x, pool_1(x), ...]``, then a 1 x 1 BaseConv to out_channels.

    (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_sizes: Sequence[int] = (5, 9, 13), act: str = "silu"):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1, act=act)
        self.pools = nn.ModuleList([nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes])
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class Focus(nn.Module):
    """Space-to-depth then a BaseConv: the four pixel phases are stacked on the channel axis
    in the order top-left, bottom-left, top-right, bottom-right (``x[..., ::2, ::2]``,
    ``x[..., 1::2, ::2]``, ``x[..., ::2, 1::2]``, ``x[..., 1::2, 1::2]``).

    (N, in_channels, H, W) with even H, W -> (N, out_channels, H / 2, W / 2) (stride 1 conv).
    """

    def __init__(self, in_channels: int, out_channels: int, ksize: int = 1, stride: int = 1,
                 act: str = "silu"):
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, ksize, stride, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]]
        return self.conv(torch.cat(phases, dim=1))
