"""Losses shared by sod2's heads."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["aligned_iou", "aligned_iou_giou", "iou_loss", "supervised_contrastive_loss", "box_iou_loss",
           "varifocal_loss"]


def aligned_iou(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """IoU of box pairs (Detectron2's ``matched_pairwise_iou`` with the union clamped to
    ``eps``: decoded predictions can be degenerate early in training, where 0/0 would be NaN).

    Args:
        pred, target: (N, 4) XYXY boxes.
    Returns:
        (N,) IoU; the union is clamped to ``eps``.
    """
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]).clamp(min=0) * (target[:, 3] - target[:, 1]).clamp(min=0)
    return inter / (area_p + area_t - inter).clamp(min=eps)


def aligned_iou_giou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """IoU and generalised IoU of box pairs, with no epsilon (RT-DETR's ``box_ops``: an
    epsilon like torchvision's 1e-7 is a large relative error on the normalised areas of tiny
    objects, ~1e-5 for a 2-pixel box at 640). Only an exact 0/0 (two empty boxes) is guarded,
    giving 0 instead of nan.

    Args:
        boxes1, boxes2: (P, 4) XYXY boxes (any unit, the same for both).
    Returns:
        iou (P,), giou (P,).
    """
    lt = torch.max(boxes1[:, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, 2:], boxes2[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area1 = (boxes1[:, 2:] - boxes1[:, :2]).prod(dim=1)
    area2 = (boxes2[:, 2:] - boxes2[:, :2]).prod(dim=1)
    tiny = torch.finfo(inter.dtype).tiny
    union = area1 + area2 - inter
    iou = inter / union.clamp(min=tiny)
    enclose = (torch.max(boxes1[:, 2:], boxes2[:, 2:]) - torch.min(boxes1[:, :2], boxes2[:, :2])).clamp(min=0)
    area_c = enclose.prod(dim=1)
    giou = iou - (area_c - union) / area_c.clamp(min=tiny)
    return iou, giou


def iou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-6,
             reduction: str = "sum") -> torch.Tensor:
    """Linear IoU loss ``1 - IoU`` on decoded boxes (UnitBox; the loss of CFINet's CRPN).

    Args:
        pred, target: (N, 4) XYXY boxes.
        eps: IoU is clamped to at least eps, as in the reference implementation.
        reduction: "sum", "mean" or "none".
    """
    loss = 1.0 - aligned_iou(pred, target).clamp(min=eps)
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    return loss


def supervised_contrastive_loss(anchors: torch.Tensor, samples: torch.Tensor,
                                positive: torch.Tensor, temperature: float,
                                weights: Optional[torch.Tensor] = None,
                                valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Supervised contrastive loss with one anchor per row (Khosla et al., CFINet Eq. 5).

    For anchor ``v_j`` with samples ``S_j`` (positives ``P_j`` and negatives):
    ``L_j = -1/|P_j| sum_{p in P_j} log(exp(v_j.v_p / t) / sum_{i in S_j} exp(v_j.v_i / t))``.

    Args:
        anchors: (G, D) L2-normalised embeddings.
        samples: (G, S, D) L2-normalised embeddings of each anchor's samples.
        positive: (G, S) bool, which samples are positives.
        temperature: t.
        weights: optional (G,) per-anchor weights.
        valid: optional (G, S) bool; False marks padding (anchors with fewer samples).
    Returns:
        (G,) per-anchor losses (0 for an anchor without positives), times ``weights``.
    """
    logits = torch.einsum("gd,gsd->gs", anchors, samples) / temperature
    if valid is not None:
        logits = logits.masked_fill(~valid, float("-inf"))
        positive = positive & valid
    logits = logits - logits.detach().max(dim=1, keepdim=True).values  # stability only
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    log_prob = log_prob.masked_fill(~positive, 0.0)  # -inf * 0 would be nan
    pos = positive.to(log_prob.dtype)
    n_pos = pos.sum(dim=1)
    loss = -(pos * log_prob).sum(dim=1) / n_pos.clamp(min=1)
    if weights is not None:
        loss = loss * weights
    return loss


def box_iou_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "iou",
                 eps: float = 1e-16, reduction: str = "none") -> torch.Tensor:
    """IoU-family box losses of YOLOX and its descendants.

    * "iou": ``1 - IoU^2`` (YOLOX's default ``IOUloss``; IoU = inter / (union + eps));
    * "giou": ``1 - clamp(GIoU, -1, 1)`` with GIoU = IoU - (C - union) / max(C, eps), C the
      area of the smallest enclosing box (YOLOX's option);
    * "ciou": ``1 - CIoU`` = 1 - IoU + rho^2 / c^2 + alpha v (Zheng et al.; v = 4/pi^2
      (atan(w_t/h_t) - atan(w_p/h_p))^2, alpha = v / (1 - IoU + v) without gradient), through
      ``torchvision.ops.complete_box_iou_loss`` (its own eps 1e-7).

    Args:
        pred, target: (N, 4) XYXY boxes.
        loss_type: "iou", "giou" or "ciou".
        eps: for "iou"/"giou" (1e-16 as YOLOX).
        reduction: "none" (default), "sum" or "mean".
    Returns:
        (N,) losses for "none", else a scalar.
    """
    if loss_type == "ciou":
        from torchvision.ops import complete_box_iou_loss
        loss = complete_box_iou_loss(pred, target, reduction="none")
    elif loss_type in ("iou", "giou"):
        lt = torch.max(pred[:, :2], target[:, :2])
        rb = torch.min(pred[:, 2:], target[:, 2:])
        overlap = (lt < rb).all(dim=1).to(pred.dtype)
        inter = (rb - lt).prod(dim=1) * overlap
        area_p = (pred[:, 2:] - pred[:, :2]).prod(dim=1)
        area_t = (target[:, 2:] - target[:, :2]).prod(dim=1)
        union = area_p + area_t - inter
        iou = inter / (union + eps)
        if loss_type == "iou":
            loss = 1.0 - iou ** 2
        else:
            c_wh = torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])
            area_c = c_wh.prod(dim=1)
            giou = iou - (area_c - union) / area_c.clamp(min=eps)
            loss = 1.0 - giou.clamp(min=-1.0, max=1.0)
    else:
        raise ValueError(f"box_iou_loss: loss_type must be 'iou', 'giou' or 'ciou', got {loss_type!r}")
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    return loss


def varifocal_loss(logits: torch.Tensor, target_score: torch.Tensor, alpha: float = 0.75,
                   gamma: float = 2.0, positive: Optional[torch.Tensor] = None,
                   positive_weight: Optional[torch.Tensor] = None,
                   reduction: str = "sum") -> torch.Tensor:
    """Varifocal loss (Zhang et al., VarifocalNet), in RT-DETR's form: BCE-with-logits against
    the soft target ``target_score``, weighted elementwise by

    * ``alpha * sigmoid(logits)^gamma`` (the probability detached) on the entries that are not
      positive: every class channel of an unmatched query, the other classes of a matched one;
    * ``positive_weight`` on the positive entries, by default ``target_score`` itself (VFL's
      q-weighting).

    RT-DETR writes this as ``alpha * p^gamma * (1 - onehot) + target_score``: with
    ``positive`` the one-hot class mask, a matched query whose target is 0 (IoU 0) gets weight
    0 on its class channel, not the negative weight. Both forms agree when ``target_score`` is
    0 off the positive entries.

    Args:
        logits: (..., C) raw class scores.
        target_score: (..., C) soft targets, e.g. ``onehot(class) * IoU``; 0 off the positives.
        alpha, gamma: the negative weighting (RT-DETR: 0.75, 2.0).
        positive: (..., C) bool, the positive entries; None: ``target_score > 0``.
        positive_weight: weight of the positive entries, (..., C) or broadcastable to it (e.g.
            a per-query reweighting (..., 1)); None: ``target_score``. Gradients flow through it.
        reduction: "sum" (default), "mean" or "none" (elementwise, the shape of ``logits``).
    """
    target_score = target_score.to(logits.dtype)
    if positive is None:
        positive = target_score > 0
    if positive_weight is None:
        positive_weight = target_score
    negative_weight = alpha * torch.sigmoid(logits).detach().pow(gamma)
    weight = torch.where(positive, positive_weight.to(logits.dtype), negative_weight)
    # weighted after the BCE: torch's ``weight`` argument takes no gradient (SR's weights need one)
    loss = F.binary_cross_entropy_with_logits(logits, target_score, reduction="none") * weight
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() else loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"varifocal_loss: reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
