"""
The VisDrone2019-DET toolkit's evaluation (MATLAB, ``evalDET.m``), in NumPy.

What it does differently from COCO (facts from the toolkit's ``utils/*.m``):

* Ground truth and detections with at least half of their (rounded) box inside an
  ignored region are removed first, using an integral image of the region mask with
  the toolkit's exact index arithmetic (``dropObjectsInIgr.m``).
* Ground truth with score 0 is "ignore": matched by intersection over the detection's
  area, absorbing any number of detections (``evalRes.m``/``compOas.m``).
* Per image, the first ``maxDets`` detections in FILE ORDER are kept, across classes.
* Per class and IoU threshold (MATLAB's ``0.5:0.05:0.95``): recall over all ground truth
  of the class (ignored included), precision ``tp / max(1, tp + fp)``, all-point (VOC)
  AP at maxDets 500, AR = final recall at maxDets 1/10/100/500.
* Classes are averaged with a weight equal to the number of images that contain the
  class (``evalClass`` in ``calcAccuracy.m`` holds one entry per such image).

The Dollar-style matching of ``evalRes.m`` gives the same per-detection outcome as
pycocotools' loop when ignored ground truth is treated as crowd, so the shared C
kernel does it (:func:`sod2.evaluation.cocoeval.match_boxes`).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .cocoeval import Detections, GroundTruth, match_boxes

__all__ = ["matlab_colon", "visdrone_iou_thresholds", "drop_in_ignored_regions",
           "evaluate_visdrone", "VISDRONE_MAX_DETS"]

VISDRONE_MAX_DETS = (1, 10, 100, 500)


def matlab_colon(a: float, step: float, b: float) -> np.ndarray:
    """MATLAB's ``a:step:b``: the first half counts up from a, the second half down from
    b, so the end points are exact (the values differ from ``np.linspace`` by an ulp)."""
    n = int(np.floor((b - a) / step + 1e-10))
    k = np.arange(n + 1)
    out = np.where(k <= n // 2, a + k * step, b - (n - k) * step)
    return out.astype(np.float64)


def visdrone_iou_thresholds() -> np.ndarray:
    return matlab_colon(0.5, 0.05, 0.95)


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def drop_in_ignored_regions(boxes: np.ndarray, regions: np.ndarray, height: int,
                            width: int) -> np.ndarray:
    """Keep-mask of ``dropObjectsInIgr.m``.

    Args:
        boxes: (N, 4) XYWH boxes (ground truth or detections).
        regions: (R, 4) XYWH ignored regions (integers in VisDrone files; rounded here).
        height, width: image size.
    Returns:
        (N,) bool, True for boxes to keep (all True when there is no region).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    if len(regions) == 0 or len(boxes) == 0:
        return np.ones(len(boxes), dtype=bool)
    H, W = int(height), int(width)
    mask = np.zeros((H, W), dtype=np.float64)
    for r in np.maximum(1, _matlab_round(regions)).astype(np.int64):
        x, y, w, h = r
        # MATLAB M(y : min(H, y+h), x : min(W, x+w)) = 1, 1-based inclusive
        mask[y - 1:min(H, y + h), x - 1:min(W, x + w)] = 1
    integral = mask.cumsum(0).cumsum(1)
    pos = np.maximum(1, _matlab_round(boxes)).astype(np.int64)
    x = np.clip(pos[:, 0], 1, W)
    y = np.clip(pos[:, 1], 1, H)
    w, h = pos[:, 2], pos[:, 3]
    xr = np.minimum(W, x + w)
    yb = np.maximum(1, np.minimum(H, y + h))

    def at(r, c):
        return integral[r - 1, c - 1]

    inside = at(y, x) + at(yb, xr) - at(y, xr) - at(yb, x)
    return inside / (h * w).astype(np.float64) < 0.5


def _voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """All-point interpolated AP (``VOCap.m``)."""
    mrec = np.r_[0.0, rec, 1.0]
    mpre = np.r_[0.0, prec, 0.0]
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def evaluate_visdrone(
    gt: GroundTruth,
    dt: Detections,
    image_sizes: Sequence[Tuple[int, int]],
    regions: Sequence[np.ndarray],
    max_dets: Sequence[int] = VISDRONE_MAX_DETS,
    iou_thresholds: Optional[np.ndarray] = None,
) -> Dict:
    """Run the toolkit's evaluation.

    Args:
        gt: ground truth; ``ignore`` marks score-0 boxes (ignored regions are NOT rows
            here but in ``regions``).
        dt: detections, rows of one image in the results file's order.
        image_sizes: (height, width) per image, indexed like ``gt.image_ids``.
        regions: per image, an (R, 4) array of ignored regions (XYWH).
        max_dets: maxDets list; AP uses the last one.
    Returns:
        dict with ``AP`` (K, T) per class and threshold in percent, ``AR`` (K, T, M),
        ``class_weight`` (K,) images containing the class, ``metrics`` (percent):
        ``AP``, ``AP50``, ``AP75``, ``AR@m``; values None if no class has ground truth.
    """
    thr = visdrone_iou_thresholds() if iou_thresholds is None else np.asarray(iou_thresholds, float)
    K, T, M = len(gt.category_ids), len(thr), len(max_dets)
    n_img = len(gt.image_ids)

    # 1. drop what lies in ignored regions, image by image
    keep_gt = np.ones(len(gt.image), bool)
    keep_dt = np.ones(len(dt.image), bool)
    for i in range(n_img):
        reg = np.asarray(regions[i], dtype=np.float64).reshape(-1, 4)
        if len(reg) == 0:
            continue
        h, w = image_sizes[i]
        gi = np.flatnonzero(gt.image == i)
        di = np.flatnonzero(dt.image == i)
        keep_gt[gi] = drop_in_ignored_regions(gt.boxes[gi], reg, h, w)
        keep_dt[di] = drop_in_ignored_regions(dt.boxes[di], reg, h, w)
    ign = gt.ignore[keep_gt].astype(bool)
    g = GroundTruth(image_ids=gt.image_ids, category_ids=gt.category_ids, image=gt.image[keep_gt],
                    category=gt.category[keep_gt], boxes=gt.boxes[keep_gt],
                    area=np.zeros(int(keep_gt.sum())), crowd=ign, ignore=ign)
    d_rows = np.flatnonzero(keep_dt)
    # rank of each kept detection among its image's kept detections, in file order
    d_img = dt.image[d_rows]
    order = np.argsort(d_img, kind="stable")
    starts = np.searchsorted(d_img[order], d_img[order])
    file_rank = np.empty(len(d_rows), np.int64)
    file_rank[order] = np.arange(len(d_rows)) - starts

    n_gt_class = np.bincount(g.category, minlength=K)[:K]
    class_weight = np.array([len(np.unique(g.image[g.category == k])) for k in range(K)])
    area_all = np.array([[-np.inf, np.inf]])
    AP = np.zeros((K, T))
    AR = np.zeros((K, T, M))
    for mi, md in enumerate(max_dets):
        sel = d_rows[file_rank < md]
        d = Detections(image=dt.image[sel], category=dt.category[sel], boxes=dt.boxes[sel],
                       scores=dt.scores[sel])
        mt = match_boxes(g, d, area_all, thr, max_det=None)
        for k in range(K):
            idx = np.flatnonzero(mt.dt_category == k)  # image order, score order inside
            idx = idx[np.argsort(-mt.dt_scores[idx], kind="stable")]
            for t in range(T):
                matched = mt.dt_matched[0, t, idx]
                ignored = mt.dt_ignored[0, t, idx]
                tp = np.cumsum(matched & ~ignored).astype(np.float64)
                rec = tp / max(1, n_gt_class[k])
                if len(rec):
                    AR[k, t, mi] = rec.max() * 100
                if mi == M - 1:
                    fp = np.cumsum(~matched & ~ignored).astype(np.float64)
                    prec = tp / np.maximum(1, fp + tp)
                    AP[k, t] = _voc_ap(rec, prec) * 100

    def wmean(x: np.ndarray) -> Optional[float]:
        # MATLAB mean2(X(evalClass, ...)) with evalClass listing class k class_weight[k] times
        if class_weight.sum() == 0:
            return None
        rows = np.repeat(np.arange(K), class_weight)
        return float(np.mean(x[rows]))

    i50 = int(np.argmin(np.abs(thr - 0.5)))
    i75 = int(np.argmin(np.abs(thr - 0.75)))
    metrics = {"AP": wmean(AP), "AP50": wmean(AP[:, i50]), "AP75": wmean(AP[:, i75])}
    for mi, md in enumerate(max_dets):
        metrics[f"AR@{md}"] = wmean(AR[:, :, mi])
    return {"AP": AP, "AR": AR, "class_weight": class_weight, "metrics": metrics}
