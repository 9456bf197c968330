"""Detectron2's ``Matcher`` with MMDetection's low-quality rule (used by CFINet's CRPN
stage 2): a ground truth claims its best prediction(s) only if their IoU reaches
``min_pos_iou``, and those predictions are matched to THAT ground truth."""
from __future__ import annotations

from typing import Tuple

import torch
from detectron2.modeling.matcher import Matcher

__all__ = ["MaxIoUMatcher"]


class MaxIoUMatcher(Matcher):
    """Label each prediction 1 (positive), 0 (negative) or -1 (ignored) from an IoU matrix.

    * IoU >= ``pos_thresh``: positive, matched to its best ground truth;
    * IoU < ``neg_thresh``: negative (``neg_thresh == pos_thresh``: no ignore band);
    * then each ground truth whose best IoU is >= ``min_pos_iou`` claims the prediction(s)
      reaching that IoU (all ties with ``assign_all_ties``), which become positive and
      matched to it (a later ground truth wins a shared prediction).

    Detectron2's ``allow_low_quality_matches`` has no minimum IoU and keeps each such
    prediction matched to its own best ground truth.

    A prediction with a NaN IoU (a non-finite box) is ignored (-1), as
    :class:`DynamicIoUAssigner` does; the other predictions are labelled as if its IoUs were 0.
    """

    def __init__(self, pos_thresh: float = 0.7, neg_thresh: float = 0.7,
                 min_pos_iou: float = 0.3, assign_all_ties: bool = True):
        if neg_thresh > pos_thresh:
            raise ValueError(f"neg_thresh {neg_thresh} > pos_thresh {pos_thresh}")
        if neg_thresh == pos_thresh:
            super().__init__([pos_thresh], [0, 1], allow_low_quality_matches=False)
        else:
            super().__init__([neg_thresh, pos_thresh], [0, -1, 1], allow_low_quality_matches=False)
        self.min_pos_iou, self.assign_all_ties = min_pos_iou, assign_all_ties

    def __call__(self, iou: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            iou: (G, P) IoU between G ground truths and P predictions.
        Returns:
            matches (P,) int64 ground-truth index per prediction, labels (P,) int8.
        """
        if iou.numel() == 0:
            return super().__call__(iou)
        nan = torch.isnan(iou)
        if bool(nan.any()):  # Detectron2's Matcher asserts IoU >= 0, which NaN fails
            matches, labels = self(iou.masked_fill(nan, 0.0))
            labels[nan.any(dim=0)] = -1
            return matches, labels
        matches, labels = super().__call__(iou)
        if self.min_pos_iou is not None:
            best_per_gt, best_idx = iou.max(dim=1)
            for g in torch.nonzero(best_per_gt >= self.min_pos_iou, as_tuple=True)[0].tolist():
                if self.assign_all_ties:
                    idx = torch.nonzero(iou[g] == best_per_gt[g], as_tuple=True)[0]
                else:
                    idx = best_idx[g:g + 1]
                labels[idx] = 1
                matches[idx] = g
        return matches, labels
