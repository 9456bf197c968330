"""
YOLOX's path-aggregation FPN (PAFPN) as a Detectron2 ``Backbone`` around a CSPDarknet.

Levels are named by stride: dark3/dark4/dark5 give p3/p4/p5 (strides 8/16/32), the
reference structure. Adding "dark2" to ``in_features`` adds p2 (stride 4), the 4-scale
variant that Foreground Probing uses (the paper names a 4-scale head but not its neck; the
extension is sod2's): the top-down path gets one more step (reduce conv on the p3 top-down
output, upsample, concat with dark2, CSP) and the bottom-up path one more step (3x3/2 conv
from p2, concat with that reduced map, CSP -> p3).

Modules are keyed by level name, so the parameters of p3-p5 keep their names and shapes when
p2 is added: a 3-level checkpoint (e.g. COCO YOLOX) loads into the 4-level neck with only the
new p2 modules missing.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from torch import nn

from ...layers.csp_blocks import BaseConv, CSPLayer, DWConv
from .cspdarknet import cspdarknet_channels

__all__ = ["YOLOPAFPN", "pafpn_output_shape"]

_DARK_STRIDES = {"dark2": 4, "dark3": 8, "dark4": 16, "dark5": 32}


def _level_name(stride: int) -> str:
    return f"p{int(math.log2(stride))}"


def pafpn_output_shape(in_features: Sequence[str] = ("dark3", "dark4", "dark5"),
                       width: float = 1.0) -> Dict[str, ShapeSpec]:
    """What ``YOLOPAFPN(CSPDarknet(width=width), in_features).output_shape()`` returns,
    without building it (for configs: the head's input shape follows ``in_features``).

    Returns:
        {"p3": ShapeSpec(channels, stride), ...} ordered by stride.
    """
    ch = cspdarknet_channels(width)
    feats = sorted(in_features, key=lambda f: _DARK_STRIDES[f])
    return {_level_name(_DARK_STRIDES[f]): ShapeSpec(channels=ch[f], stride=_DARK_STRIDES[f]) for f in feats}


@BACKBONE_REGISTRY.register()
class YOLOPAFPN(Backbone):
    """PAFPN over ``bottom_up``'s ``in_features`` (L levels, C_l channels each, each level's
    channels twice the previous one, as CSPDarknet's), ``n = round(3 * depth)`` bottlenecks
    per CSPLayer (no shortcut):

    * top-down, from the top level t: ``r_t = reduce_convs[t](dark_t)`` (1x1, C_t -> C_{t-1});
      for each lower level l: ``td_l = td_blocks[l](cat[up2(r_{l+1}), dark_l])``
      (2 C_l -> C_l) and, unless l is the lowest, ``r_l = reduce_convs[l](td_l)``;
    * bottom-up: the lowest output is its ``td``; for each higher level l:
      ``out_l = bu_blocks[l](cat[bu_convs[l-1](out_{l-1}), r_l])`` (3x3/2 conv C_{l-1} ->
      C_{l-1}, then CSP 2 C_{l-1} -> C_l).

    With dark3-5 this is the reference: reduce_convs p5/p4 = lateral_conv0/reduce_conv1,
    td_blocks p4/p3 = C3_p4/C3_p3, bu_convs p3/p4 = bu_conv2/bu_conv1, bu_blocks p4/p5 =
    C3_n3/C3_n4.

    Args:
        bottom_up: a Backbone (CSPDarknet) whose outputs include ``in_features``.
        in_features: consecutive stages of ``bottom_up``, ("dark3", "dark4", "dark5") by
            default; ("dark2", "dark3", "dark4", "dark5") adds p2.
        depth: YOLOX depth multiplier (neck CSP depth ``round(3 * depth)``).
        depthwise: DWConv for the bottom-up 3x3/2 convs and the bottlenecks.
        act: activation name.
        square_pad: > 0 pads every batch to this square size (YOLOX's letterbox to e.g. 640),
            through Detectron2's ``padding_constraints``.

    forward: (N, 3, H, W), H and W multiples of 32 -> {"p3": (N, C_3, H/8, W/8), ...}.
    """

    def __init__(self, bottom_up: Backbone, in_features: Sequence[str] = ("dark3", "dark4", "dark5"),
                 depth: float = 1.0, depthwise: bool = False, act: str = "silu", square_pad: int = 0):
        super().__init__()
        self.bottom_up = bottom_up
        shapes = bottom_up.output_shape()
        in_features = sorted(in_features, key=lambda f: shapes[f].stride if f in shapes else 0)
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f"YOLOPAFPN: bottom_up does not output {missing} (its outputs: "
                             f"{sorted(shapes)}); add them to its out_features")
        if len(in_features) < 2:
            raise ValueError(f"YOLOPAFPN needs at least 2 levels, got {in_features}")
        self.in_features = tuple(in_features)
        strides = [shapes[f].stride for f in in_features]
        ch = [shapes[f].channels for f in in_features]
        for a, b in zip(strides, strides[1:]):
            if b != 2 * a:
                raise ValueError(f"YOLOPAFPN levels must be consecutive (strides x2), got {strides}")
        names = [_level_name(s) for s in strides]
        n = round(3 * depth)
        Conv = DWConv if depthwise else BaseConv

        self.reduce_convs = nn.ModuleDict()
        self.td_blocks = nn.ModuleDict()
        self.bu_convs = nn.ModuleDict()
        self.bu_blocks = nn.ModuleDict()
        for i in range(len(names) - 1, 0, -1):  # top-down
            self.reduce_convs[names[i]] = BaseConv(ch[i], ch[i - 1], 1, 1, act=act)
            self.td_blocks[names[i - 1]] = CSPLayer(2 * ch[i - 1], ch[i - 1], n, False,
                                                    depthwise=depthwise, act=act)
        for i in range(1, len(names)):  # bottom-up
            self.bu_convs[names[i - 1]] = Conv(ch[i - 1], ch[i - 1], 3, 2, act=act)
            self.bu_blocks[names[i]] = CSPLayer(2 * ch[i - 1], ch[i], n, False,
                                                depthwise=depthwise, act=act)

        self._out_features = names
        self._out_feature_channels = dict(zip(names, ch))
        self._out_feature_strides = dict(zip(names, strides))
        self._square_pad = int(square_pad)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        bottom = self.bottom_up(x)
        feats = [bottom[f] for f in self.in_features]
        names = self._out_features
        top = len(names) - 1
        reduced = {names[top]: self.reduce_convs[names[top]](feats[top])}
        td = None
        for i in range(top - 1, -1, -1):
            up = F.interpolate(reduced[names[i + 1]], scale_factor=2.0, mode="nearest")
            td = self.td_blocks[names[i]](torch.cat([up, feats[i]], dim=1))
            if i > 0:
                reduced[names[i]] = self.reduce_convs[names[i]](td)
        outs = {names[0]: td}
        for i in range(1, top + 1):
            down = self.bu_convs[names[i - 1]](outs[names[i - 1]])
            outs[names[i]] = self.bu_blocks[names[i]](torch.cat([down, reduced[names[i]]], dim=1))
        return outs

    @property
    def size_divisibility(self) -> int:
        return 32

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": 32, "square_size": self._square_pad}
