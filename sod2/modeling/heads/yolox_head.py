"""YOLOX's decoupled head: per level a 1x1 stem, then a classification branch and a
regression branch (two 3x3 convs each) ending in 1x1 prediction convs."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Mapping, Tuple

import torch
from detectron2.layers import ShapeSpec
from torch import Tensor, nn

from ...errors import UserError
from ...layers.csp_blocks import BaseConv, DWConv
from ..checks import check_size
from . import SOD2_HEAD_REGISTRY

__all__ = ["YOLOXHead", "YOLOXHeadOutput"]


@dataclass
class YOLOXHeadOutput:
    """What :class:`YOLOXHead` computes for a batch of N images, per level l (in the head's
    ``in_features`` order, D = ``feat_channels``, C = ``num_classes``).

    Attributes:
        cls_feats, reg_feats: per level (N, D, H_l, W_l), the last maps of the classification
            and regression branches (inputs of the 1x1 prediction convs; what extensions such as
            Foreground Probing or Better Sampling's reweighting read).
        cls_logits: per level (N, C, H_l, W_l).
        reg: per level (N, 4, H_l, W_l) raw box outputs (dx, dy in cells, log w, log h in strides).
        obj_logits: per level (N, 1, H_l, W_l).
    """

    cls_feats: List[Tensor]
    reg_feats: List[Tensor]
    cls_logits: List[Tensor]
    reg: List[Tensor]
    obj_logits: List[Tensor]


@SOD2_HEAD_REGISTRY.register()
class YOLOXHead(nn.Module):
    """Decoupled head (reference ``YOLOXHead``). For each level l (keyed by its name):

    * ``stems[l]``: 1x1 BaseConv C_l -> D;
    * ``cls_convs[l]`` / ``reg_convs[l]``: two 3x3 convs D -> D each (DWConv if depthwise);
    * ``cls_preds[l]`` (D -> num_classes) on the cls branch; ``reg_preds[l]`` (D -> 4) and
      ``obj_preds[l]`` (D -> 1) on the reg branch; 1x1 convs with bias.

    The cls and obj biases start at ``-log((1 - prior_prob) / prior_prob)`` (-4.595 for 0.01);
    every other parameter keeps PyTorch's default init (as the reference).

    :meth:`forward` returns a :class:`YOLOXHeadOutput` (branch features and predictions); it is
    :meth:`forward_features` then :meth:`predict`, which the export graph also calls.

    Args:
        input_shape: ordered {level name: ShapeSpec(channels=C_l, stride=s_l)}, low stride
            first (e.g. ``YOLOPAFPN.output_shape()`` or ``pafpn_output_shape(...)``). The
            features passed to forward come in this order.
        num_classes: C.
        feat_channels: D, ``int(256 * width)`` in YOLOX (128 for S).
        depthwise: DWConv for the branch convs (Nano).
        act: activation name.
        prior_prob: initial foreground probability of the cls and obj outputs.
    """

    def __init__(self, input_shape: Mapping[str, ShapeSpec], num_classes: int, feat_channels: int = 256,
                 depthwise: bool = False, act: str = "silu", prior_prob: float = 0.01):
        super().__init__()
        check_size("YOLOXHead", "num_classes", num_classes)
        check_size("YOLOXHead", "feat_channels", feat_channels)
        if not input_shape:
            raise UserError("YOLOXHead: input_shape has no level")
        self.in_features = list(input_shape.keys())
        self.strides = [int(input_shape[f].stride) if input_shape[f].stride else None
                        for f in self.in_features]
        self.num_classes = num_classes
        self.feat_channels = feat_channels
        Conv = DWConv if depthwise else BaseConv
        D = feat_channels
        self.stems = nn.ModuleDict()
        self.cls_convs = nn.ModuleDict()
        self.reg_convs = nn.ModuleDict()
        self.cls_preds = nn.ModuleDict()
        self.reg_preds = nn.ModuleDict()
        self.obj_preds = nn.ModuleDict()
        for f in self.in_features:
            self.stems[f] = BaseConv(int(input_shape[f].channels), D, 1, 1, act=act)
            self.cls_convs[f] = nn.Sequential(Conv(D, D, 3, 1, act=act), Conv(D, D, 3, 1, act=act))
            self.reg_convs[f] = nn.Sequential(Conv(D, D, 3, 1, act=act), Conv(D, D, 3, 1, act=act))
            self.cls_preds[f] = nn.Conv2d(D, num_classes, 1)
            self.reg_preds[f] = nn.Conv2d(D, 4, 1)
            self.obj_preds[f] = nn.Conv2d(D, 1, 1)
        self.prior_prob = prior_prob
        self.initialize_biases(prior_prob)

    def initialize_biases(self, prior_prob: float) -> None:
        """Fill the cls and obj biases with ``-log((1 - p) / p)``."""
        bias = -math.log((1.0 - prior_prob) / prior_prob)
        with torch.no_grad():
            for f in self.in_features:
                self.cls_preds[f].bias.fill_(bias)
                self.obj_preds[f].bias.fill_(bias)

    def forward_features(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """
        Args:
            features: per level (N, C_l, H_l, W_l), in ``in_features`` order.
        Returns:
            cls_feats, reg_feats: per level (N, D, H_l, W_l), the last feature maps of the
            cls and reg branches (inputs of the 1x1 prediction convs).
        """
        if len(features) != len(self.in_features):
            raise ValueError(f"YOLOXHead expects {len(self.in_features)} levels {self.in_features}, "
                             f"got {len(features)}")
        cls_feats, reg_feats = [], []
        for f, x in zip(self.in_features, features):
            x = self.stems[f](x)
            cls_feats.append(self.cls_convs[f](x))
            reg_feats.append(self.reg_convs[f](x))
        return cls_feats, reg_feats

    def predict(self, cls_feats: List[Tensor], reg_feats: List[Tensor]
                ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """
        Args:
            cls_feats, reg_feats: per level (N, D, H_l, W_l), from :meth:`forward_features`.
        Returns:
            cls_logits: per level (N, C, H_l, W_l);
            reg: per level (N, 4, H_l, W_l) raw box outputs (dx, dy, log w, log h in cells);
            obj_logits: per level (N, 1, H_l, W_l).
        """
        cls_logits, regs, objs = [], [], []
        for f, c, r in zip(self.in_features, cls_feats, reg_feats):
            cls_logits.append(self.cls_preds[f](c))
            regs.append(self.reg_preds[f](r))
            objs.append(self.obj_preds[f](r))
        return cls_logits, regs, objs

    def forward(self, features: List[Tensor]) -> YOLOXHeadOutput:
        """:meth:`forward_features` then :meth:`predict`.

        Args:
            features: per level (N, C_l, H_l, W_l), in ``in_features`` order.
        """
        cls_feats, reg_feats = self.forward_features(features)
        return YOLOXHeadOutput(cls_feats, reg_feats, *self.predict(cls_feats, reg_feats))
