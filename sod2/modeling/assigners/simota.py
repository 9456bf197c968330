"""
SimOTA label assignment (YOLOX): a simplified optimal-transport assignment where each
ground truth takes its ``k`` cheapest candidate locations, ``k`` from its IoUs.

Per image:

1. Geometry prior (candidates). ``rule="center"`` (default, the reference since 2023,
   YOLOX PR #1589): a location is a candidate for gt g iff its cell centre lies strictly
   inside the square of half-side ``1.5 * stride`` around g's centre; no in-box test.
   ``rule="box_or_center"`` (YOLOX <= 0.3.0 and the paper): candidates are the locations
   inside any gt box or any ``2.5 * stride`` centre square.
2. Cost over candidates: ``BCE(sqrt(sig(cls) * sig(obj)), onehot(gt)).sum(classes)
   + 3 * -log(IoU + 1e-8) + penalty``, the penalty (1e6) on pairs outside g's square (centre
   rule) or (1e5) on pairs not both in g's box and in g's square (box_or_center rule).
3. Dynamic k: ``k_g = max(int(sum of g's top-min(10, #candidates) IoUs), 1)``; g takes its
   ``k_g`` lowest-cost candidates; a location taken by several gts keeps the cheapest.

Non-finite predictions (a diverging model): a candidate whose box, class or objectness logits
are not all finite costs less than every finite pair (:func:`sod2.modeling.checks.finite_cost`)
and its NaN IoU counts 0 towards ``k``: the assignment never fails on them, is deterministic,
and makes them positives, so that their non-finite values enter the losses (computed on the
raw predictions) and Detectron2's trainer stops with the loss names instead of training on.
Finite inputs are assigned exactly as before.

Location centres are the cell centres ``(grid + 0.5) * stride`` (the reference's geometry
convention; its box decoding uses ``grid * stride``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from ..checks import check_size, finite_cost

__all__ = ["SimOTAAssigner", "SimOTAResult"]


@dataclass
class SimOTAResult:
    """The assignment of one image with A locations, F of them foreground.

    Attributes:
        fg_mask: (A,) bool, the foreground locations.
        matched_gt: (F,) int64, the gt index of each foreground location (in location order).
        matched_iou: (F,) IoU of each foreground location's predicted box with its gt.
        num_fg: F.
    """

    fg_mask: Tensor
    matched_gt: Tensor
    matched_iou: Tensor
    num_fg: int


class SimOTAAssigner:
    """SimOTA (see the module docstring).

    Args:
        rule: "center" (current reference, default) or "box_or_center" (paper / <= 0.3.0).
        center_radius: half-side of the centre square in strides; None: 1.5 for "center",
            2.5 for "box_or_center".
        penalty: cost added to pairs outside the geometry prior; None: 1e6 for "center",
            1e5 for "box_or_center".
        iou_weight: weight of the IoU cost (3.0).
        topk: number of top IoUs summed for the dynamic k (10).
    """

    def __init__(self, rule: str = "center", center_radius: Optional[float] = None,
                 penalty: Optional[float] = None, iou_weight: float = 3.0, topk: int = 10):
        if rule not in ("center", "box_or_center"):
            raise ValueError(f"SimOTAAssigner rule must be 'center' or 'box_or_center', got {rule!r}")
        check_size("SimOTAAssigner", "topk", topk)
        self.rule = rule
        self.center_radius = center_radius if center_radius is not None else (1.5 if rule == "center" else 2.5)
        self.penalty = penalty if penalty is not None else (1e6 if rule == "center" else 1e5)
        self.iou_weight = iou_weight
        self.topk = topk

    def geometry(self, anchor_centers: Tensor, strides: Tensor, gt_boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            anchor_centers: (A, 2) cell centres (x, y) in input pixels, ``(grid + 0.5) * stride``.
            strides: (A,) stride of each location.
            gt_boxes: (G, 4) XYXY.
        Returns:
            candidates: (A,) bool, locations that take part in the matching;
            relation: (G, P) bool over the P candidates, pairs that get no penalty.
        """
        x, y = anchor_centers[:, 0][None], anchor_centers[:, 1][None]
        gcx = ((gt_boxes[:, 0] + gt_boxes[:, 2]) / 2)[:, None]
        gcy = ((gt_boxes[:, 1] + gt_boxes[:, 3]) / 2)[:, None]
        r = strides[None] * self.center_radius
        in_center = torch.stack([x - (gcx - r), (gcx + r) - x, y - (gcy - r), (gcy + r) - y], -1).amin(-1) > 0
        if self.rule == "center":
            candidates = in_center.any(0)
            return candidates, in_center[:, candidates]
        in_box = torch.stack([x - gt_boxes[:, 0:1], gt_boxes[:, 2:3] - x,
                              y - gt_boxes[:, 1:2], gt_boxes[:, 3:4] - y], -1).amin(-1) > 0
        candidates = (in_box | in_center).any(0)
        return candidates, (in_box & in_center)[:, candidates]

    def cost(self, pred_boxes: Tensor, cls_logits: Tensor, obj_logits: Tensor, gt_boxes: Tensor,
             gt_classes: Tensor, relation: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            pred_boxes: (P, 4) XYXY decoded boxes of the candidates.
            cls_logits: (P, C); obj_logits: (P,).
            gt_boxes: (G, 4) XYXY; gt_classes: (G,) int.
            relation: (G, P) bool, pairs inside the geometry prior.
        Returns:
            cost: (G, P); ious: (G, P).
        """
        ious = box_iou(gt_boxes.float(), pred_boxes.float())
        iou_cost = -torch.log(ious + 1e-8)
        device_type = cls_logits.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            p = (cls_logits.float().sigmoid() * obj_logits.float().sigmoid()[:, None]).sqrt()
            # a NaN logit gives p = NaN, which torch's BCE refuses; those candidates are marked
            # non-finite below (p is in [0, 1] otherwise: nan_to_num changes nothing else)
            p = p.nan_to_num(nan=0.0)
            onehot = F.one_hot(gt_classes.long(), cls_logits.shape[1]).float()
            G, P = ious.shape
            cls_cost = F.binary_cross_entropy(p[None].expand(G, -1, -1), onehot[:, None].expand(-1, P, -1),
                                              reduction="none").sum(-1)
        cost = cls_cost + self.iou_weight * iou_cost + self.penalty * (~relation).float()
        broken = ~(torch.isfinite(pred_boxes).all(dim=1) & torch.isfinite(cls_logits).all(dim=1)
                   & torch.isfinite(obj_logits))
        cost = finite_cost(cost.masked_fill(broken[None], float("nan")))
        return cost, ious

    def match(self, cost: Tensor, ious: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Dynamic-k matching on a cost matrix.

        Args:
            cost, ious: (G, P) over P >= 1 candidates.
        Returns:
            fg: (P,) bool, matched candidates; matched_gt: (F,) int64; matched_iou: (F,).
        """
        G, P = cost.shape
        n = min(self.topk, P)
        # a NaN IoU (non-finite predicted box) counts 0 towards k
        dynamic_k = ious.nan_to_num(nan=0.0).topk(n, dim=1).values.sum(1).int().clamp(min=1)
        matching = torch.zeros_like(cost, dtype=torch.bool)
        for g in range(G):
            idx = cost[g].topk(int(dynamic_k[g]), largest=False).indices
            matching[g, idx] = True
        multiple = matching.sum(0) > 1
        if multiple.any():
            cheapest = cost[:, multiple].min(dim=0).indices
            matching[:, multiple] = False
            matching[cheapest, multiple] = True
        fg = matching.any(0)
        matched_gt = matching[:, fg].int().argmax(0).long()
        matched_iou = ious[matched_gt, fg.nonzero().squeeze(1)]
        return fg, matched_gt, matched_iou

    @torch.no_grad()
    def __call__(self, pred_boxes: Tensor, cls_logits: Tensor, obj_logits: Tensor, anchor_centers: Tensor,
                 strides: Tensor, gt_boxes: Tensor, gt_classes: Tensor) -> SimOTAResult:
        """Assign one image.

        Args:
            pred_boxes: (A, 4) decoded predicted boxes, XYXY in input pixels.
            cls_logits: (A, C) class logits.
            obj_logits: (A,) objectness logits.
            anchor_centers: (A, 2) cell centres (x, y), ``(grid + 0.5) * stride``.
            strides: (A,) stride of each location.
            gt_boxes: (G, 4) XYXY; gt_classes: (G,) int in [0, C).
        Returns:
            :class:`SimOTAResult`; nothing is assigned without gts or without candidates.
        """
        A = pred_boxes.shape[0]
        fg_mask = torch.zeros(A, dtype=torch.bool, device=pred_boxes.device)
        empty = SimOTAResult(fg_mask, torch.zeros(0, dtype=torch.long, device=pred_boxes.device),
                             pred_boxes.new_zeros(0), 0)
        if gt_boxes.shape[0] == 0:
            return empty
        candidates, relation = self.geometry(anchor_centers, strides, gt_boxes)
        if not candidates.any():
            return empty
        cost, ious = self.cost(pred_boxes[candidates], cls_logits[candidates], obj_logits[candidates],
                               gt_boxes, gt_classes, relation)
        fg, matched_gt, matched_iou = self.match(cost, ious)
        fg_mask[candidates.nonzero().squeeze(1)[fg]] = True
        return SimOTAResult(fg_mask, matched_gt, matched_iou.to(pred_boxes.dtype), int(fg.sum()))
