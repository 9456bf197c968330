"""
TinyPerson's log-average miss rate (TinyBenchmark's ``cityperson_eval`` with its TinyPerson
settings: size ranges on ``sqrt(area)``, IoU 0.25/0.5/0.75, up to 1000 detections per image).

Per size setup (tiny1 [2, 8], tiny2 [8, 12], tiny3 [12, 20], tiny [2, 20], small [20, 32],
all [-1, 1e10], in px of ``sqrt(area)``):

* ground truth is ignored if flagged ``ignore`` or ``uncertain`` or if its size is outside
  the setup (``iscrowd`` plays no part); ignored ground truth is matched by intersection over
  the detection's area and absorbs any number of detections;
* detections keep the top 1000 per image by score, then those with
  ``lo / 1.25 <= sqrt(w * h) < hi * 1.25``;
* an unmatched detection falls back to the ignored ground truth maximising
  ``IoD / (1 + IoD) * (1 + area / det_area)`` when that exceeds 0.5 (the reference's rule,
  kept as is);
* miss rate ``1 - recall`` is read at 9 false-positives-per-image points from 0.01 to 1
  (last point with FPPI <= the reference; before the first detection the reference's index
  -1 reads the FINAL recall, kept as is) and averaged in log space.

The matching is the shared C kernel (:func:`sod2.evaluation.cocoeval.match_boxes`,
``iod_mode=2``).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .cocoeval import Detections, GroundTruth, match_boxes, rank_detections

__all__ = ["MR_SETUPS", "fppi_points", "miss_rates"]

MR_SETUPS: Dict[str, Tuple[float, float]] = {
    "tiny1": (2, 8), "tiny2": (8, 12), "tiny3": (12, 20), "tiny": (2, 20), "small": (20, 32),
    "all": (-1, 1e10)}


def fppi_points() -> np.ndarray:
    """The 9 FPPI points, built as the reference builds them (exact floats)."""
    return np.exp(np.arange(np.log(0.01), np.log(1) + 1e-10, np.log(100) / 8))


def miss_rates(gt: GroundTruth, dt: Detections, ignore_flag: np.ndarray,
               setups: Optional[Dict[str, Tuple[float, float]]] = None,
               iou_thresholds: Sequence[float] = (0.25, 0.5, 0.75), max_dets: int = 1000,
               exp_filter: float = 1.25) -> Dict[Tuple[str, float], Optional[float]]:
    """Log-average miss rate (a fraction) per (setup, IoU threshold).

    Args:
        gt: ground truth (``area`` is the annotation area; boxes XYWH).
        dt: detections.
        ignore_flag: (G,) bool, the annotation's ``ignore`` or ``uncertain`` (not iscrowd).
        setups: name -> (lo, hi) size range; default :data:`MR_SETUPS`.
    Returns:
        {(setup, iou): MR or None when the setup has no non-ignored ground truth}.
    """
    setups = MR_SETUPS if setups is None else setups
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    fppi_thr = fppi_points()
    n_images = len(gt.image_ids)
    K = len(gt.category_ids)
    size_gt = np.sqrt(gt.area)
    d_size = np.sqrt(dt.boxes[:, 2] * dt.boxes[:, 3])
    perm, _, rank = rank_detections(dt, K)
    top_k = perm[rank < max_dets]
    out = {}
    for name, (lo, hi) in setups.items():
        ign = ignore_flag.astype(bool) | (size_gt < lo) | (size_gt > hi)
        g = GroundTruth(image_ids=gt.image_ids, category_ids=gt.category_ids, image=gt.image,
                        category=gt.category, boxes=gt.boxes, area=gt.area, crowd=ign, ignore=ign,
                        id_nonzero=gt.id_nonzero)
        # the size filter applies after the top-k per image (and category); kept rows stay in
        # file order so that score ties break as in the reference
        sel = np.sort(top_k[(d_size[top_k] >= lo / exp_filter) & (d_size[top_k] < hi * exp_filter)])
        d = Detections(image=dt.image[sel], category=dt.category[sel], boxes=dt.boxes[sel],
                       scores=dt.scores[sel])
        m = match_boxes(g, d, np.array([[-np.inf, np.inf]]), thr, max_det=None, iod_mode=2)
        ys = -np.ones((len(thr), len(fppi_thr), K))
        for k in range(K):
            npig = int(((m.gt_category == k) & ~m.gt_ignored[0]).sum())
            if npig == 0:
                continue
            idx = np.flatnonzero(m.dt_category == k)  # image order, score order inside
            idx = idx[np.argsort(-m.dt_scores[idx], kind="mergesort")]
            for t in range(len(thr)):
                matched, ignored = m.dt_matched[0, t, idx], m.dt_ignored[0, t, idx]
                tp = np.cumsum(matched & ~ignored).astype(float)
                fp = np.cumsum(~matched & ~ignored).astype(float)
                if len(tp) == 0:
                    ys[t, :, k] = 0
                    continue
                recall = tp / npig
                pos = np.searchsorted(fp / n_images, fppi_thr, side="right") - 1
                ys[t, :, k] = recall[pos]  # pos -1 reads the final recall, as the reference
        for t, iou in enumerate(thr):
            mrs = 1 - ys[t]
            valid = mrs[mrs < 2]
            if valid.size == 0:
                out[(name, float(iou))] = None
            else:
                with np.errstate(divide="ignore"):
                    out[(name, float(iou))] = float(np.exp(np.mean(np.log(valid))))
    return out
