"""CFINet's area-based dynamic IoU threshold for CRPN stage 1 (paper Eq. 1)."""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["dynamic_iou_threshold", "DynamicIoUAssigner"]


def dynamic_iou_threshold(size: torch.Tensor, base_size: float = 12.0, gamma: float = 0.15,
                          rule: str = "paper") -> torch.Tensor:
    """Positive IoU threshold of each ground truth from its size ``sqrt(w * h)``.

    * ``"paper"`` (Eq. 1, log base 2 as the official code): ``max(0.25, 0.20 + gamma *
      log2(size / base_size))`` — larger objects need a higher IoU;
    * ``"code"`` (official implementation): ``clip(0.25 + gamma * log2(size / base_size),
      0.20, 0.70)``, then a prediction is also accepted at IoU >= 0.25, so the effective
      threshold is ``min(that, 0.25)``: between 0.20 and 0.25.

    Args:
        size: (G,) square root of the ground-truth areas, in original image pixels.
    Returns:
        (G,) thresholds.
    """
    lg = torch.log2(size.clamp(min=1e-6) / base_size)
    if rule == "paper":
        return (0.20 + gamma * lg).clamp(min=0.25)
    if rule == "code":
        return (0.25 + gamma * lg).clamp(0.20, 0.70).clamp(max=0.25)
    raise ValueError(f"rule must be 'paper' or 'code', got {rule!r}")


class DynamicIoUAssigner:
    """Stage-1 assignment: an anchor is positive for its best-IoU ground truth ``g`` if
    IoU >= threshold(g); negative if its best IoU < ``neg_thresh``; ignored otherwise.
    No best-anchor (low-quality) matching: a ground truth below its threshold everywhere
    gets no positive, as in the official code. An anchor with a NaN IoU is ignored (-1):
    the maximum over ground truths propagates the NaN and no threshold test passes on it.
    """

    def __init__(self, base_size: float = 12.0, gamma: float = 0.15, rule: str = "paper",
                 neg_thresh: float = 0.15):
        dynamic_iou_threshold(torch.ones(1), base_size, gamma, rule)  # validate the rule
        self.base_size, self.gamma, self.rule, self.neg_thresh = base_size, gamma, rule, neg_thresh

    def __call__(self, iou: torch.Tensor, gt_sizes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            iou: (G, A) IoU between ground truths and anchors.
            gt_sizes: (G,) ``sqrt(w * h)`` of the ground truths in original image pixels.
        Returns:
            matches (A,) int64, labels (A,) int8 in {1, 0, -1}.
        """
        G, A = iou.shape
        if G == 0:
            return (torch.zeros(A, dtype=torch.int64, device=iou.device),
                    torch.zeros(A, dtype=torch.int8, device=iou.device))
        thr = dynamic_iou_threshold(gt_sizes, self.base_size, self.gamma, self.rule)
        max_iou, matches = iou.max(dim=0)
        labels = torch.full((A,), -1, dtype=torch.int8, device=iou.device)
        labels[max_iou < self.neg_thresh] = 0
        labels[max_iou >= thr[matches]] = 1
        return matches, labels
