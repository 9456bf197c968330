"""
:class:`BetterSampling`: the one module that holds Better Sampling's parts and its varifocal
loss parameters, handed to a detector's loss as a single injected component (RT-DETR:
:class:`~sod2.modeling.methods.better_sampling.criterion.BetterSamplingCriterion`'s
``better_sampling``; YOLOX: ``BetterSamplingYOLOX.better_sampling``). Passing None instead
switches the whole method off: the detector is then its baseline.
"""
from __future__ import annotations

import math
from typing import Callable, FrozenSet, Optional

from torch import Tensor, nn

from ....errors import UserError
from .components import SamplePointRefinement, SampleReweighting

__all__ = ["BetterSampling", "PAPER_VFL_ALPHA", "PAPER_VFL_GAMMA"]

# the varifocal loss of every row of the paper's ablations (Table 6; RT-DETR's own: 0.75 / 2.0)
PAPER_VFL_ALPHA, PAPER_VFL_GAMMA = 0.5, 1.5


class BetterSampling(nn.Module):
    """Better Sampling's three parts and its varifocal loss parameters.

    Args:
        class_target: ST, ``(pred_boxes (P, 4), gt_boxes (P, 4)) -> (P,)`` detached class
            target, both boxes cxcywh in the same unit (:class:`~.components.ScaleAlignedTarget`); None:
            the baseline's target (VFL's IoU).
        reweighting: SR, a :class:`SampleReweighting` (its ``hidden_dim`` must equal the
            detector's feature width); None: no per-positive weights.
        point_refinement: SPR, a :class:`SamplePointRefinement` (DETR only: it needs the
            decoder's sampling offsets and attention weights); None: no offset/attention loss.
        vfl_alpha, vfl_gamma: the varifocal loss's negative weighting ``alpha * p^gamma``
            used while Better Sampling is on (the paper's 0.5 / 1.5, Table 6), whatever parts
            are set: the paper's ablation rows (Table 3) differ only in the three parts.

    Attributes:
        required_outputs: the optional :class:`~sod2.modeling.transformer.rtdetr_decoder.DecoderLayerOutput`
            fields the parts read, to be produced by the decoder: ``hidden`` and
            ``box_hidden`` (the classification and regression features H_cls, H_reg, (B, N, C))
            for SR, ``offsets`` (B, N, M, L, P, 2) and ``attention`` (B, N, M, L, P) for SPR;
            ST needs none (it reads the boxes).

    State dict: only SR has tensors (``reweighting.*``); ST and SPR are parameter-free.
    """

    def __init__(self, *, class_target: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 reweighting: Optional[SampleReweighting] = None,
                 point_refinement: Optional[SamplePointRefinement] = None,
                 vfl_alpha: float = PAPER_VFL_ALPHA, vfl_gamma: float = PAPER_VFL_GAMMA):
        super().__init__()
        for name, value in (("vfl_alpha", vfl_alpha), ("vfl_gamma", vfl_gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise UserError(f"BetterSampling: {name} must be a finite number >= 0, got {value!r}")
        if class_target is not None and not callable(class_target):
            raise UserError(f"BetterSampling: class_target must be callable (pred_boxes, gt_boxes) -> (P,) or None, "
                            f"got {type(class_target).__name__}")
        if reweighting is not None and not isinstance(reweighting, SampleReweighting):
            raise UserError(f"BetterSampling: reweighting must be a SampleReweighting or None, "
                            f"got {type(reweighting).__name__}")
        if point_refinement is not None and not isinstance(point_refinement, SamplePointRefinement):
            raise UserError(f"BetterSampling: point_refinement must be a SamplePointRefinement or None, "
                            f"got {type(point_refinement).__name__}")
        self.class_target = class_target
        self.reweighting = reweighting
        self.point_refinement = point_refinement
        self.vfl_alpha = float(vfl_alpha)
        self.vfl_gamma = float(vfl_gamma)

    @property
    def required_outputs(self) -> FrozenSet[str]:
        """The optional decoder-layer fields the parts read (class docstring)."""
        fields = set()
        if self.reweighting is not None:
            fields |= {"hidden", "box_hidden"}
        if self.point_refinement is not None:
            fields |= {"offsets", "attention"}
        return frozenset(fields)

    def extra_repr(self) -> str:
        return f"class_target={self.class_target!r}, vfl_alpha={self.vfl_alpha}, vfl_gamma={self.vfl_gamma}"

