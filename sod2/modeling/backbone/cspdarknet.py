"""CSPDarknet, the backbone of YOLOX, as a Detectron2 ``Backbone``."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ...layers.csp_blocks import BaseConv, CSPLayer, DWConv, Focus, SPPBottleneck

__all__ = ["CSPDarknet", "cspdarknet_channels"]

_STAGES = ("stem", "dark2", "dark3", "dark4", "dark5")
_STRIDES = {"stem": 2, "dark2": 4, "dark3": 8, "dark4": 16, "dark5": 32}


def cspdarknet_channels(width: float) -> Dict[str, int]:
    """Output channels of each stage for a width multiplier: ``base = int(64 * width)``;
    stem ``base``, dark2 ``2 base``, dark3 ``4 base``, dark4 ``8 base``, dark5 ``16 base``."""
    base = int(64 * width)
    return {name: base * 2 ** i for i, name in enumerate(_STAGES)}


@BACKBONE_REGISTRY.register()
class CSPDarknet(Backbone):
    """CSPDarknet (YOLOX, reference ``darknet.CSPDarknet``) with ``base = int(64 * width)``
    channels and ``d = max(round(3 * depth), 1)`` bottlenecks:

    * stem: Focus (space-to-depth + 3x3 conv) -> base channels, stride 2;
    * dark2: 3x3/2 conv -> 2 base, CSPLayer(d);
    * dark3: 3x3/2 conv -> 4 base, CSPLayer(3 d);
    * dark4: 3x3/2 conv -> 8 base, CSPLayer(3 d);
    * dark5: 3x3/2 conv -> 16 base, SPP (5, 9, 13), CSPLayer(d, no shortcut).

    The strided convs (and the bottlenecks) are DWConv when ``depthwise``.

    Args:
        depth, width: the YOLOX depth and width multipliers (S: 0.33, 0.50).
        depthwise: Nano's depthwise-separable convs.
        act: "silu", "relu" or "lrelu".
        out_features: stages to return, from "stem", "dark2", "dark3", "dark4", "dark5";
            ("dark3", "dark4", "dark5") by default, with "dark2" for a stride-4 level.
        freeze_at: 0 trains everything; k > 0 freezes the first k stages (stem = 1), in
            BN frozen too (Detectron2's ``FrozenBatchNorm2d``, as its ResNet does).

    forward: (N, 3, H, W) with H, W multiples of 32 -> {name: (N, C_name, H / s, W / s)}.
    """

    def __init__(self, depth: float = 1.0, width: float = 1.0, depthwise: bool = False,
                 act: str = "silu", out_features: Sequence[str] = ("dark3", "dark4", "dark5"),
                 freeze_at: int = 0):
        super().__init__()
        out_features = tuple(out_features)
        unknown = [f for f in out_features if f not in _STAGES]
        if unknown or not out_features:
            raise ValueError(f"CSPDarknet out_features must be taken from {_STAGES}, got {out_features}")
        self._out_features = out_features
        ch = cspdarknet_channels(width)
        d = max(round(depth * 3), 1)
        Conv = DWConv if depthwise else BaseConv

        self.stem = Focus(3, ch["stem"], ksize=3, act=act)
        self.dark2 = nn.Sequential(
            Conv(ch["stem"], ch["dark2"], 3, 2, act=act),
            CSPLayer(ch["dark2"], ch["dark2"], n=d, depthwise=depthwise, act=act))
        self.dark3 = nn.Sequential(
            Conv(ch["dark2"], ch["dark3"], 3, 2, act=act),
            CSPLayer(ch["dark3"], ch["dark3"], n=3 * d, depthwise=depthwise, act=act))
        self.dark4 = nn.Sequential(
            Conv(ch["dark3"], ch["dark4"], 3, 2, act=act),
            CSPLayer(ch["dark4"], ch["dark4"], n=3 * d, depthwise=depthwise, act=act))
        self.dark5 = nn.Sequential(
            Conv(ch["dark4"], ch["dark5"], 3, 2, act=act),
            SPPBottleneck(ch["dark5"], ch["dark5"], act=act),
            CSPLayer(ch["dark5"], ch["dark5"], n=d, shortcut=False, depthwise=depthwise, act=act))

        self._out_feature_channels = {f: ch[f] for f in out_features}
        self._out_feature_strides = {f: _STRIDES[f] for f in out_features}
        self._last = max(_STAGES.index(f) for f in out_features)
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0) -> "CSPDarknet":
        """Freeze the first ``freeze_at`` stages (parameters and BN statistics)."""
        for name in _STAGES[:freeze_at]:
            stage = getattr(self, name)
            for p in stage.parameters():
                p.requires_grad_(False)
            setattr(self, name, FrozenBatchNorm2d.convert_frozen_batchnorm(stage))
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = {}
        for name in _STAGES[: self._last + 1]:
            x = getattr(self, name)(x)
            if name in self._out_features:
                out[name] = x
        return out

    @property
    def size_divisibility(self) -> int:
        return 32
