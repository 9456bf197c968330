"""
RT-DETR's set criterion (Hungarian-matched varifocal + L1 + GIoU losses over several output
sets), with Better Sampling's three parts as optional components.

For each output set (the last decoder layer, the auxiliary layers, the encoder's top-K
proposals, the denoising groups of every layer):

1. matching: Hungarian for ordinary sets, each set matched on its own outputs; the fixed
   denoising assignment (positive dn query <-> its ground truth, tiled over the groups) for
   the sets named ``dn_<i>``;
2. the class target t of each positive, detached: the IoU of the matched pair (RT-DETR's
   VFL) or the scale-aligned target (Better Sampling's ST);
3. optional sample weights ``r_cls``, ``r_reg`` of the positives (SR);
4. losses, each a sum divided by the normaliser ``num_boxes`` (the GT count of the batch
   summed over processes, divided by the world size, at least 1; ``num_boxes * num_groups``
   for the denoising sets):

   * ``loss_vfl``: BCE-with-logits of every query and class against ``onehot(class) * t``,
     weighted ``alpha * p^gamma`` (p detached) off the positives' class channels and ``t``
     on them (``r_cls`` with SR: see :class:`SampleReweighting`'s ``cls_weight``);
   * ``loss_bbox``: L1 on normalised (cx, cy, w, h), summed over the 4 coordinates;
     ``loss_giou``: ``1 - GIoU``; each times ``r_reg`` with SR;
   * with SPR, for the sets that carry the cross-attention sampling (``offsets``,
     ``attention``, ``layer_index``: the decoder layers), ``loss_offset`` and ``loss_atten``
     over the positive queries (the encoder set has none).

Each loss is multiplied by its weight (``weight_dict``) and named ``<loss>`` for the set
named "" (the last decoder layer) and ``<loss>_<set name>`` otherwise (``loss_vfl_aux_0``,
``loss_giou_enc``, ``loss_bbox_dn_2``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...layers.losses import varifocal_loss
from ..checks import check_size
from ..training import zero_dependency
from ..methods.better_sampling.components import IoUTarget, aligned_iou_giou, log_reweighting_stats

__all__ = ["SetCriterion", "MatchedPositives", "DEFAULT_WEIGHT_DICT"]

# RT-DETR's weights (VFL 1, L1 5, GIoU 2); the SPR terms enter with weight 1 (the paper's
# L = L_cls + L_reg + L_offset + L_atten)
DEFAULT_WEIGHT_DICT = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_offset": 1.0, "loss_atten": 1.0}

Indices = List[Tuple[Tensor, Tensor]]


@dataclass
class MatchedPositives:
    """The P matched (query, ground truth) pairs of one output set, flattened over images.

    Attributes:
        batch_index: (P,) image of each pair.
        query_index: (P,) query index in the set.
        labels: (P,) int64 ground-truth class.
        gt_boxes: (P, 4) ground-truth boxes, normalised cxcywh.
    """

    batch_index: Tensor
    query_index: Tensor
    labels: Tensor
    gt_boxes: Tensor

    def __len__(self) -> int:
        return int(self.batch_index.numel())

    @staticmethod
    def gather(indices: Indices, targets: Sequence[Mapping[str, Tensor]], device: torch.device) -> "MatchedPositives":
        """From per-image (query indices, target indices) and the targets."""
        batch, query, labels, boxes = [], [], [], []
        for i, ((src, tgt), t) in enumerate(zip(indices, targets)):
            src = torch.as_tensor(src, dtype=torch.int64, device=device)
            tgt = torch.as_tensor(tgt, dtype=torch.int64, device=device)
            batch.append(torch.full_like(src, i))
            query.append(src)
            labels.append(t["labels"].to(device)[tgt].long())
            boxes.append(t["boxes"].to(device)[tgt].float())
        return MatchedPositives(torch.cat(batch), torch.cat(query), torch.cat(labels),
                                torch.cat(boxes).reshape(-1, 4))


class SetCriterion(nn.Module):
    """RT-DETR's criterion with optional Better Sampling (see the module docstring).

    Args:
        matcher: ``matcher(logits (B, N, C), boxes (B, N, 4), targets) -> [(query_idx,
            target_idx)]`` per image (a :class:`HungarianMatcher`).
        num_classes: C.
        weight_dict: loss weights by name (``loss_vfl``, ``loss_bbox``, ``loss_giou``,
            ``loss_offset``, ``loss_atten``); missing keys from :data:`DEFAULT_WEIGHT_DICT`
            (1 / 5 / 2 / 1 / 1); the same weights for every set.
        alpha, gamma: VFL's negative weighting (RT-DETR 0.75 / 2.0; the Better Sampling paper
            0.5 / 1.5).
        class_target: ``(pred_boxes (P, 4), gt_boxes (P, 4)) -> (P,)`` detached class target;
            None: :class:`IoUTarget` (plain RT-DETR); :class:`ScaleAlignedTarget` for ST.
        reweighting: SR, a module ``(h_cls (P, C), h_reg (P, C), target (P,), score (P,)) ->
            (r_cls (P,), r_reg (P,))`` with an attribute ``cls_weight`` ("replace"/"scale")
            (:class:`SampleReweighting`); every set must then carry ``hidden`` and
            ``box_hidden``. None: no reweighting.
        point_refinement: SPR, ``(offsets (P, M, L, Pt, 2), attention (P, M, L, Pt),
            layer_index) -> (loss_offset, loss_atten)`` sums (:class:`SamplePointRefinement`),
            applied to the sets that carry ``offsets``; None: no SPR.
        log_prefix: EventStorage prefix of the SR weight statistics.

    Targets: per image ``{"labels": (N_i,) int64 in [0, C), "boxes": (N_i, 4) normalised
    cxcywh}``.
    """

    def __init__(self, *, matcher: Callable[..., Indices], num_classes: int,
                 weight_dict: Optional[Mapping[str, float]] = None, alpha: float = 0.75, gamma: float = 2.0,
                 class_target: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 reweighting: Optional[nn.Module] = None, point_refinement: Optional[nn.Module] = None,
                 log_prefix: str = "better_sampling"):
        super().__init__()
        check_size("SetCriterion", "num_classes", num_classes)
        unknown = set(weight_dict or {}) - set(DEFAULT_WEIGHT_DICT)
        if unknown:
            raise ValueError(f"SetCriterion weight_dict: unknown keys {sorted(unknown)}")
        self.matcher = matcher
        self.num_classes = num_classes
        self.weight_dict = {**DEFAULT_WEIGHT_DICT, **dict(weight_dict or {})}
        self.alpha = alpha
        self.gamma = gamma
        self.class_target = class_target if class_target is not None else IoUTarget()
        self.reweighting = reweighting
        self.point_refinement = point_refinement
        self.log_prefix = log_prefix

    # ---------------------------------------------------------------- pieces
    @staticmethod
    def num_boxes(targets: Sequence[Mapping[str, Tensor]], device: torch.device) -> float:
        """The GT count of the local batch, summed over processes, divided by the world size,
        at least 1 (RT-DETR's normaliser)."""
        n = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        world_size = comm.get_world_size()
        if world_size > 1:
            dist.all_reduce(n)
        return max(n.item() / world_size, 1.0)

    def match(self, output: Mapping, targets: Sequence[Mapping[str, Tensor]], denoising=None) -> Indices:
        """Hungarian matching of the set, or the fixed denoising assignment for "dn_*" sets."""
        if _is_denoising(output["name"]):
            if denoising is None:
                raise ValueError(f"SetCriterion: output set {output['name']!r} needs the denoising queries")
            return list(zip(denoising.positive_index, denoising.gt_index))
        return self.matcher(output["logits"].detach(), output["boxes"].detach(), targets)

    def reweight(self, output: Mapping, pos: MatchedPositives, target: Tensor, logits: Tensor
                 ) -> Tuple[Tensor, Tensor]:
        """SR weights of the positives (P,) each."""
        if "hidden" not in output or "box_hidden" not in output:
            raise ValueError(f"SetCriterion: sample reweighting needs 'hidden' and 'box_hidden' in output set "
                             f"{output['name']!r}")
        b, q = pos.batch_index, pos.query_index
        score = torch.sigmoid(logits[b, q, pos.labels].detach())
        return self.reweighting(output["hidden"][b, q], output["box_hidden"][b, q], target, score)

    def loss_labels(self, logits: Tensor, pos: MatchedPositives, target: Tensor,
                    r_cls: Optional[Tensor]) -> Tensor:
        """Varifocal loss sum over all queries and classes (not normalised).

        Args:
            logits: (B, N, C) float; target: (P,) class targets; r_cls: (P,) or None.
        """
        index = (pos.batch_index, pos.query_index, pos.labels)
        target_score = torch.zeros_like(logits).index_put(index, target.to(logits.dtype))
        positive = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device).index_put(
            index, torch.ones_like(pos.labels, dtype=torch.bool))
        positive_weight = None
        if r_cls is not None:
            w = r_cls if self.reweighting.cls_weight == "replace" else r_cls * target
            positive_weight = torch.zeros_like(logits).index_put(index, w.to(logits.dtype))
        return varifocal_loss(logits, target_score, self.alpha, self.gamma, positive=positive,
                              positive_weight=positive_weight, reduction="sum")

    @staticmethod
    def loss_boxes(pred_boxes: Tensor, gt_boxes: Tensor, r_reg: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """L1 (summed over cx, cy, w, h) and 1 - GIoU sums over the positives (not normalised).

        Args:
            pred_boxes, gt_boxes: (P, 4) normalised cxcywh; r_reg: (P,) or None.
        """
        l1 = F.l1_loss(pred_boxes, gt_boxes, reduction="none").sum(dim=1)
        _, giou = aligned_iou_giou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
        loss_giou = 1.0 - giou
        if r_reg is not None:
            l1, loss_giou = l1 * r_reg, loss_giou * r_reg
        return l1.sum(), loss_giou.sum()

    # --------------------------------------------------------------- forward
    def forward(self, outputs: Sequence[Mapping], targets: Sequence[Mapping[str, Tensor]],
                denoising=None) -> Dict[str, Tensor]:
        """
        Args:
            outputs: the output sets, each a dict with ``name`` ("" for the last decoder
                layer, "aux_<i>", "enc", "dn_<i>"), ``logits`` (B, N, C), ``boxes`` (B, N, 4)
                sigmoid cxcywh; for SR ``hidden`` (B, N, D) and ``box_hidden`` (B, N, D); for
                SPR ``offsets`` (B, N, M, L, Pt, 2), ``attention`` (B, N, M, L, Pt),
                ``layer_index`` (int).
            targets: per image {"labels", "boxes"} (see the class docstring).
            denoising: the batch's denoising queries (``positive_index``, ``gt_index``: per
                image, ``num_groups``) when there are "dn_*" sets.
        Returns:
            the weighted losses (see the module docstring).
        """
        names = [o["name"] for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"SetCriterion: duplicate output set names {names}")
        device = outputs[0]["logits"].device
        num_boxes = self.num_boxes(targets, device)
        losses: Dict[str, Tensor] = {}
        r_all: List[Tuple[Tensor, Tensor]] = []
        for output in outputs:
            name = output["name"]
            pos = MatchedPositives.gather(self.match(output, targets, denoising), targets, device)
            normalizer = num_boxes * denoising.num_groups if _is_denoising(name) else num_boxes
            logits = output["logits"].float()
            b, q = pos.batch_index, pos.query_index
            pred_boxes = output["boxes"][b, q].float()
            target = self.class_target(pred_boxes.detach(), pos.gt_boxes)
            r_cls = r_reg = None
            if self.reweighting is not None:
                r_cls, r_reg = self.reweight(output, pos, target, logits)
                r_all.append((r_cls, r_reg))
            terms = {"loss_vfl": self.loss_labels(logits, pos, target, r_cls)}
            terms["loss_bbox"], terms["loss_giou"] = self.loss_boxes(pred_boxes, pos.gt_boxes, r_reg)
            if self.point_refinement is not None and "offsets" in output:
                terms["loss_offset"], terms["loss_atten"] = self.point_refinement(
                    output["offsets"][b, q].float(), output["attention"][b, q].float(), output["layer_index"])
            suffix = f"_{name}" if name else ""
            for key, value in terms.items():
                losses[key + suffix] = value * (self.weight_dict[key] / normalizer)
        if self.reweighting is not None:
            # every generator parameter takes part in the graph even when it gets no gradient
            # (no positive in the batch, or detached weights), so DDP needs no find_unused_parameters
            first = next(iter(losses))
            losses[first] = losses[first] + zero_dependency(self.reweighting)
            log_reweighting_stats(torch.cat([r for r, _ in r_all]), torch.cat([r for _, r in r_all]),
                                  self.log_prefix)
        return losses

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, weight_dict={self.weight_dict}, alpha={self.alpha}, "
                f"gamma={self.gamma}, class_target={self.class_target!r}")


def _is_denoising(name: str) -> bool:
    return name.startswith("dn_")
