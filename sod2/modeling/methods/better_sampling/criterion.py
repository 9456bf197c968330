"""
Better Sampling on RT-DETR by criterion injection: :class:`BetterSamplingCriterion` is
RT-DETR's :class:`~sod2.modeling.criterion.SetCriterion` whose template methods ask its
:class:`~.better_sampling.BetterSampling` module. The detector, its decoder and inference are
RT-DETR's; the criterion asks the decoder for the fields the parts read
(``required_outputs``).

With ``better_sampling=None`` every template method is RT-DETR's (``super()``) and the
criterion holds no parameter: the model is RT-DETR, with RT-DETR's own VFL alpha / gamma
(the criterion's ``alpha``, ``gamma``: 0.75 / 2.0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ...criterion.set_criterion import DEFAULT_WEIGHT_DICT, MatchedPositives, OutputSet, PositiveWeights, SetCriterion
from ...training import zero_dependency
from ...transformer.rtdetr_decoder import DecoderLayerOutput
from .better_sampling import BetterSampling
from .components import log_reweighting_stats

__all__ = ["BetterSamplingCriterion", "SampleWeights"]


@dataclass
class SampleWeights(PositiveWeights):
    """SR's weights of one output set: :class:`PositiveWeights` (``vfl``: ``r_cls`` or
    ``r_cls * t`` by :class:`SampleReweighting`'s ``cls_weight``; ``boxes``: ``r_reg``) and the
    generator's ``r_cls`` (P,) itself, for the logged statistics."""

    r_cls: Tensor


class BetterSamplingCriterion(SetCriterion):
    """RT-DETR's set criterion with Better Sampling (the package page says which part does
    what).

    Args:
        better_sampling: the method's parts and VFL parameters; None: RT-DETR's criterion.
        log_prefix: EventStorage prefix of the SR weight statistics (``<prefix>/r_cls_mean``,
            ``r_cls_std``, ``r_reg_mean``, ``r_reg_std``).
        the others: :class:`SetCriterion`'s (``alpha``, ``gamma``: RT-DETR's VFL, used only
            when ``better_sampling`` is None). ``weight_dict`` also takes ``loss_offset`` and
            ``loss_atten`` (SPR's terms, weight 1: the paper's
            ``L = L_cls + L_reg + L_offset + L_atten``).
    """

    default_weight_dict: Mapping[str, float] = {**DEFAULT_WEIGHT_DICT, "loss_offset": 1.0, "loss_atten": 1.0}

    def __init__(self, *, better_sampling: Optional[BetterSampling], log_prefix: str = "better_sampling", **kwargs):
        super().__init__(**kwargs)
        self.better_sampling = better_sampling
        self.log_prefix = log_prefix

    @property
    def required_outputs(self) -> AbstractSet[str]:
        if self.better_sampling is None:
            return super().required_outputs
        return super().required_outputs | self.better_sampling.required_outputs

    def class_target(self, output_set: OutputSet, pos: MatchedPositives, pred_boxes: Tensor) -> Tensor:
        """ST's scale-aligned target when set, else the IoU."""
        if self.better_sampling is None or self.better_sampling.class_target is None:
            return super().class_target(output_set, pos, pred_boxes)
        return self.better_sampling.class_target(pred_boxes, pos.gt_boxes)

    def positive_weights(self, output_set: OutputSet, pos: MatchedPositives, target: Tensor,
                         logits: Tensor) -> Optional[PositiveWeights]:
        """SR's ``r_cls``, ``r_reg`` from the set's ``hidden`` (H_cls) and ``box_hidden`` (H_reg)
        of the positives and their detached scores on the ground-truth class."""
        if self.better_sampling is None or self.better_sampling.reweighting is None:
            return super().positive_weights(output_set, pos, target, logits)
        out = output_set.output
        if out.hidden is None or out.box_hidden is None:
            raise ValueError(f"{type(self).__name__}: sample reweighting needs 'hidden' and 'box_hidden' in output "
                             f"set {output_set.name!r} (the decoder was not asked for them)")
        reweighting = self.better_sampling.reweighting
        b, q = pos.batch_index, pos.query_index
        score = torch.sigmoid(logits[b, q, pos.labels].detach())
        r_cls, r_reg = reweighting(out.hidden[b, q], out.box_hidden[b, q], target, score)
        vfl = r_cls if reweighting.cls_weight == "replace" else r_cls * target
        return SampleWeights(vfl=vfl, boxes=r_reg, r_cls=r_cls)

    def extra_terms(self, output_set: OutputSet, pos: MatchedPositives) -> Dict[str, Tensor]:
        """SPR's ``loss_offset`` and ``loss_atten`` sums for the decoder layers' sets (the
        encoder's set has no sampling points)."""
        terms = super().extra_terms(output_set, pos)
        if self.better_sampling is None or self.better_sampling.point_refinement is None:
            return terms
        out = output_set.output
        if not isinstance(out, DecoderLayerOutput):
            return terms
        if out.offsets is None or out.attention is None:
            raise ValueError(f"{type(self).__name__}: sample-point refinement needs 'offsets' and 'attention' in "
                             f"output set {output_set.name!r} (the decoder was not asked for them)")
        b, q = pos.batch_index, pos.query_index
        terms["loss_offset"], terms["loss_atten"] = self.better_sampling.point_refinement(
            out.offsets[b, q].float(), out.attention[b, q].float(), out.layer_index)
        return terms

    def vfl_alpha_gamma(self) -> Tuple[float, float]:
        """The paper's VFL parameters (``better_sampling.vfl_alpha``, ``vfl_gamma``) when Better
        Sampling is on, RT-DETR's otherwise."""
        if self.better_sampling is None:
            return super().vfl_alpha_gamma()
        return self.better_sampling.vfl_alpha, self.better_sampling.vfl_gamma

    def finish(self, losses: Dict[str, Tensor], weights: List[PositiveWeights]) -> Dict[str, Tensor]:
        """With SR: every generator parameter takes part in the graph even when it gets no
        gradient (no positive in the batch, or detached weights), so DDP needs no
        ``find_unused_parameters``; the weights' statistics go to the EventStorage."""
        losses = super().finish(losses, weights)
        if self.better_sampling is None or self.better_sampling.reweighting is None:
            return losses
        first = next(iter(losses))
        losses[first] = losses[first] + zero_dependency(self.better_sampling.reweighting)
        sr = [w for w in weights if isinstance(w, SampleWeights)]
        log_reweighting_stats(torch.cat([w.r_cls for w in sr]), torch.cat([w.boxes for w in sr]), self.log_prefix)
        return losses
