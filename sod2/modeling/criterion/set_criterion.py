"""
RT-DETR's set criterion: Hungarian-matched varifocal + L1 + GIoU losses over several output
sets.

For each output set (:class:`OutputSet`: the last decoder layer, the auxiliary layers, the
encoder's top-Q proposals, the denoising queries of every layer):

1. matching: Hungarian for ordinary sets, each set matched on its own outputs; the fixed
   denoising assignment (positive dn query <-> its ground truth, tiled over the groups) for
   the sets with ``denoising=True``;
2. the class target t of each positive, detached: the IoU of the matched pair (VFL's q,
   :class:`IoUTarget`);
3. losses, each a sum divided by the normaliser ``num_boxes`` (the GT count of the batch
   summed over processes, divided by the world size, at least 1; ``num_boxes * num_groups``
   for the denoising sets):

   * ``loss_vfl``: BCE-with-logits of every query and class against ``onehot(class) * t``,
     weighted ``alpha * p^gamma`` (p detached) off the positives' class channels and ``t``
     on them;
   * ``loss_bbox``: L1 on normalised (cx, cy, w, h), summed over the 4 coordinates;
     ``loss_giou``: ``1 - GIoU``.

Each loss is multiplied by its weight (``weight_dict``) and named ``<loss>`` for the set
named "" (the last decoder layer) and ``<loss>_<set name>`` otherwise (``loss_vfl_aux_0``,
``loss_giou_enc``, ``loss_bbox_dn_2``).

A method that changes the training objective subclasses the criterion and overrides its
template methods (criterion injection, as detrex's DINO/DN-DETR criteria), each of which is
RT-DETR's behaviour here:

* :attr:`SetCriterion.required_outputs`: the optional decoder fields it reads (none);
* :meth:`SetCriterion.class_target`: t of the positives (the IoU);
* :meth:`SetCriterion.positive_weights`: per-positive weights of the VFL term and the box
  losses (none);
* :meth:`SetCriterion.extra_terms`: more loss terms of a set (none);
* :meth:`SetCriterion.vfl_alpha_gamma`: VFL's alpha and gamma (``alpha``, ``gamma``: 0.75, 2.0);
* :meth:`SetCriterion.finish`: a last look at the loss dict and every set's positive
  weights (nothing).

Better Sampling is such a subclass (``sod2.modeling.methods.better_sampling``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.utils import comm
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...layers.losses import aligned_iou_giou, varifocal_loss
from ..checks import check_size
from ..transformer.rtdetr_decoder import DecoderLayerOutput, EncoderOutput

__all__ = ["SetCriterion", "OutputSet", "MatchedPositives", "PositiveWeights", "IoUTarget", "DEFAULT_WEIGHT_DICT"]

# RT-DETR's weights (VFL 1, L1 5, GIoU 2)
DEFAULT_WEIGHT_DICT = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}

Indices = List[Tuple[Tensor, Tensor]]


class IoUTarget:
    """VFL's classification target ``q = IoU(pred, gt)`` (RT-DETR), detached.

    Call with ``(pred_boxes (P, 4), gt_boxes (P, 4))`` in (cx, cy, w, h) (any unit, the same
    for both); returns (P,).
    """

    @torch.no_grad()
    def __call__(self, pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        iou, _ = aligned_iou_giou(box_convert(pred_boxes.detach(), "cxcywh", "xyxy"),
                                  box_convert(gt_boxes, "cxcywh", "xyxy"))
        return iou

    def __repr__(self) -> str:
        return "IoUTarget()"


@dataclass
class OutputSet:
    """One output set of the criterion.

    Attributes:
        name: "" for the last decoder layer, "aux_<i>", "enc", "dn_<i>": the suffix of its
            loss names.
        output: the set's predictions (:class:`DecoderLayerOutput` restricted to the set's
            queries, or the encoder's :class:`EncoderOutput`), N queries each.
        denoising: True for the denoising queries of a layer (fixed assignment, normaliser
            times the number of groups), False for the matched sets.
    """

    name: str
    output: Union[DecoderLayerOutput, EncoderOutput]
    denoising: bool = False


@dataclass
class PositiveWeights:
    """Per-positive loss weights of one output set (:meth:`SetCriterion.positive_weights`).

    Attributes:
        vfl: (P,) the weight of each positive's BCE term in the varifocal loss, in place of
            VFL's target score t.
        boxes: (P,) the factor of each positive's L1 and GIoU loss.
    """

    vfl: Tensor
    boxes: Tensor


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
    """RT-DETR's set criterion (see the module docstring).

    Args:
        matcher: ``matcher(logits (B, N, C), boxes (B, N, 4), targets) -> [(query_idx,
            target_idx)]`` per image (a :class:`HungarianMatcher`).
        num_classes: C.
        weight_dict: loss weights by name (the keys of :attr:`default_weight_dict`: RT-DETR's
            ``loss_vfl`` 1, ``loss_bbox`` 5, ``loss_giou`` 2); missing keys take the default;
            the same weights for every set.
        alpha, gamma: VFL's negative weighting ``alpha * p^gamma`` (RT-DETR: 0.75 / 2.0).

    Targets: per image ``{"labels": (N_i,) int64 in [0, C), "boxes": (N_i, 4) normalised
    cxcywh}``.
    """

    default_weight_dict: Mapping[str, float] = DEFAULT_WEIGHT_DICT

    def __init__(self, *, matcher: Callable[..., Indices], num_classes: int,
                 weight_dict: Optional[Mapping[str, float]] = None, alpha: float = 0.75, gamma: float = 2.0):
        super().__init__()
        check_size(type(self).__name__, "num_classes", num_classes)
        unknown = set(weight_dict or {}) - set(self.default_weight_dict)
        if unknown:
            raise ValueError(f"{type(self).__name__} weight_dict: unknown keys {sorted(unknown)} "
                             f"(known: {sorted(self.default_weight_dict)})")
        self.matcher = matcher
        self.num_classes = num_classes
        self.weight_dict = {**self.default_weight_dict, **dict(weight_dict or {})}
        self.alpha = alpha
        self.gamma = gamma

    # ------------------------------------------------------- template methods
    @property
    def required_outputs(self) -> AbstractSet[str]:
        """The optional :class:`DecoderLayerOutput` fields the criterion reads (the decoder's
        ``extras``); RT-DETR's: none."""
        return frozenset()

    def class_target(self, output_set: OutputSet, pos: "MatchedPositives", pred_boxes: Tensor) -> Tensor:
        """The detached class target t (P,) of the positives, from their predicted boxes
        (P, 4) and ``pos.gt_boxes`` (normalised cxcywh): the IoU (VFL's q)."""
        return IoUTarget()(pred_boxes, pos.gt_boxes)

    def positive_weights(self, output_set: OutputSet, pos: "MatchedPositives", target: Tensor,
                         logits: Tensor) -> Optional[PositiveWeights]:
        """Per-positive loss weights of the set (``target`` (P,), ``logits`` (B, N, C)), or
        None: VFL's weight t on the positives and unweighted box losses (RT-DETR)."""
        return None

    def extra_terms(self, output_set: OutputSet, pos: "MatchedPositives") -> Dict[str, Tensor]:
        """More loss terms of the set: name (a key of ``weight_dict``) -> sum over the set's
        positives, normalised and weighted like the others; RT-DETR: none."""
        return {}

    def vfl_alpha_gamma(self) -> Tuple[float, float]:
        """VFL's (alpha, gamma): ``alpha``, ``gamma``."""
        return self.alpha, self.gamma

    def finish(self, losses: Dict[str, Tensor], weights: List[PositiveWeights]) -> Dict[str, Tensor]:
        """Called once per forward with the weighted losses and the positive weights of
        every set that had some (in set order); returns the loss dict (RT-DETR: as it is)."""
        return losses

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

    def match(self, output_set: OutputSet, targets: Sequence[Mapping[str, Tensor]], denoising=None) -> Indices:
        """Hungarian matching of the set, or the fixed denoising assignment for a denoising set."""
        if output_set.denoising:
            if denoising is None:
                raise ValueError(f"{type(self).__name__}: output set {output_set.name!r} needs the denoising queries")
            return list(zip(denoising.positive_index, denoising.gt_index))
        out = output_set.output
        return self.matcher(out.logits.detach(), out.boxes.detach(), targets)

    def loss_labels(self, logits: Tensor, pos: "MatchedPositives", target: Tensor,
                    positive_weight: Optional[Tensor] = None) -> Tensor:
        """Varifocal loss sum over all queries and classes (not normalised).

        Args:
            logits: (B, N, C) float; target: (P,) class targets; positive_weight: (P,) the
                positives' weights in place of t (:class:`PositiveWeights`), or None.
        """
        index = (pos.batch_index, pos.query_index, pos.labels)
        target_score = torch.zeros_like(logits).index_put(index, target.to(logits.dtype))
        positive = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device).index_put(
            index, torch.ones_like(pos.labels, dtype=torch.bool))
        if positive_weight is not None:
            positive_weight = torch.zeros_like(logits).index_put(index, positive_weight.to(logits.dtype))
        alpha, gamma = self.vfl_alpha_gamma()
        return varifocal_loss(logits, target_score, alpha, gamma, positive=positive,
                              positive_weight=positive_weight, reduction="sum")

    @staticmethod
    def loss_boxes(pred_boxes: Tensor, gt_boxes: Tensor, weight: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """L1 (summed over cx, cy, w, h) and 1 - GIoU sums over the positives (not normalised).

        Args:
            pred_boxes, gt_boxes: (P, 4) normalised cxcywh; weight: (P,) or None.
        """
        l1 = F.l1_loss(pred_boxes, gt_boxes, reduction="none").sum(dim=1)
        _, giou = aligned_iou_giou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
        loss_giou = 1.0 - giou
        if weight is not None:
            l1, loss_giou = l1 * weight, loss_giou * weight
        return l1.sum(), loss_giou.sum()

    # --------------------------------------------------------------- forward
    def forward(self, outputs: Sequence[OutputSet], targets: Sequence[Mapping[str, Tensor]],
                denoising=None) -> Dict[str, Tensor]:
        """
        Args:
            outputs: the output sets (:class:`OutputSet`), each with the fields of
                :attr:`required_outputs` filled.
            targets: per image {"labels", "boxes"} (see the class docstring).
            denoising: the batch's denoising queries (``positive_index``, ``gt_index``: per
                image, ``num_groups``) when there are denoising sets.
        Returns:
            the weighted losses (see the module docstring).
        """
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"{type(self).__name__}: duplicate output set names {names}")
        device = outputs[0].output.logits.device
        num_boxes = self.num_boxes(targets, device)
        losses: Dict[str, Tensor] = {}
        all_weights: List[PositiveWeights] = []
        for output_set in outputs:
            out = output_set.output
            pos = MatchedPositives.gather(self.match(output_set, targets, denoising), targets, device)
            normalizer = num_boxes * denoising.num_groups if output_set.denoising else num_boxes
            logits = out.logits.float()
            pred_boxes = out.boxes[pos.batch_index, pos.query_index].float()
            target = self.class_target(output_set, pos, pred_boxes.detach())
            weights = self.positive_weights(output_set, pos, target, logits)
            if weights is not None:
                all_weights.append(weights)
            terms = {"loss_vfl": self.loss_labels(logits, pos, target, None if weights is None else weights.vfl)}
            terms["loss_bbox"], terms["loss_giou"] = self.loss_boxes(
                pred_boxes, pos.gt_boxes, None if weights is None else weights.boxes)
            terms.update(self.extra_terms(output_set, pos))
            suffix = f"_{output_set.name}" if output_set.name else ""
            for key, value in terms.items():
                losses[key + suffix] = value * (self.weight_dict[key] / normalizer)
        return self.finish(losses, all_weights)

    def extra_repr(self) -> str:
        alpha, gamma = self.vfl_alpha_gamma()
        return f"num_classes={self.num_classes}, weight_dict={self.weight_dict}, alpha={alpha}, gamma={gamma}"
