"""Merging overlapping detections: NMS or greedy non-maximum merging (GREEDYNMM), with the
IoU or IoS (intersection over the smaller box) match metric, class-wise or class-agnostic.

sod2's one merging implementation: sliced inference (:class:`SlicedInference`) and the
evaluator's patch merging (:func:`sod2.evaluation.merge.merge_patch_predictions`) both
call :func:`merge_detections`. NumPy only (the loop runs on the CPU whatever device the
model runs on); the matching pairs are found on a grid of cells as large as the boxes, so
tens of thousands of detections per image merge in a fraction of a second.

Rules (the same final detections as SAHI's ``NMSPostprocess`` / ``GreedyNMMPostprocess``):

* boxes are visited by decreasing score; ties are broken by ``x1``, then ``y1``, ``x2``,
  ``y2`` ascending (so the result does not depend on the input order);
* two boxes *match* when their metric is ``>= threshold``; the metric of boxes without
  area is 0;
* NMS: a visited box that no kept box matched is kept and suppresses every later box it
  matches;
* GREEDYNMM: a visited box that no keeper claimed becomes a keeper and claims every
  later unclaimed box it matches (compared with its own box). The claimed boxes are then
  merged into it one by one in visiting order, each only if it still matches the merged
  box so far (whose box is the union of the merged boxes, whose score is their maximum,
  and whose class is the class of the higher-scoring one, the merged-in box's on a tie);
  a claimed box that no longer matches is dropped (SAHI's behaviour);
* class-wise merging runs the same on each class separately.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from ..errors import UserError

__all__ = ["MERGE_METHODS", "MATCH_METRICS", "MergeResult", "merge_detections", "pairwise_metric",
           "check_merge_args"]

MERGE_METHODS = ("nms", "greedynmm")
MATCH_METRICS = ("iou", "ios")


class MergeResult(NamedTuple):
    """Merged detections, by decreasing score (ties as the visiting order).

    boxes: (M, 4) float64 XYXY; scores: (M,) float64; classes: (M,) int64;
    keep: (M,) int64 index (into the input) of the box each detection was kept or grown from.
    """
    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    keep: np.ndarray


def check_merge_args(method: str, metric: str, threshold: float) -> None:
    """Raise one :class:`~sod2.errors.UserError` line for an unknown method or metric or a
    threshold outside (0, 1] (NaN included)."""
    if method not in MERGE_METHODS:
        raise UserError(f"merge method must be one of {', '.join(MERGE_METHODS)}, got {method!r}")
    if metric not in MATCH_METRICS:
        raise UserError(f"match metric must be one of {', '.join(MATCH_METRICS)}, got {metric!r}")
    if not 0.0 < float(threshold) <= 1.0:
        raise UserError(f"match threshold must be in (0, 1], got {threshold}")


def pairwise_metric(box: np.ndarray, boxes: np.ndarray, metric: str) -> np.ndarray:
    """IoU or IoS of one box with many.

    Args:
        box: (4,) XYXY.
        boxes: (K, 4) XYXY.
        metric: "iou" or "ios" (intersection over the smaller of the two areas).
    Returns:
        (K,) float64; 0 where the denominator is 0 (boxes without area).
    """
    box = np.asarray(box, np.float64)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    a = (box[2] - box[0]) * (box[3] - box[1])
    b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    den = a + b - inter if metric == "iou" else np.minimum(a, b)
    out = np.zeros(len(boxes), np.float64)
    np.divide(inter, den, out=out, where=den > 0)
    return out


def _visit_order(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    # decreasing score, then x1, y1, x2, y2 ascending (np.lexsort: last key is primary)
    return np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))


def _matches(boxes: np.ndarray, metric: str, thr: float):
    """The matching pairs as CSR ``(indptr (N+1,), indices)``: the boxes whose metric with
    box i is >= thr are ``indices[indptr[i]:indptr[i + 1]]`` (i itself excluded), ascending.

    Candidate pairs come from a grid per size class: the boxes of widths in
    (2^(a-1), 2^a] and heights in (2^(b-1), 2^b] are binned by their top-left corner into
    cells as large as the class's largest box, sorted by cell, and each box looks up the
    rows and columns of cells whose boxes can reach it (a contiguous run of the sorted order
    per row). The cost grows with the number of nearby pairs, not with N^2 nor with the
    boxes that merely share a column (measured on 45,000 detections of a 4000x3000 image:
    0.17 s, against 1.7 s for a sweep along x alone); the metric is
    :func:`pairwise_metric`'s, to the bit (same operations, symmetric)."""
    n = len(boxes)
    x1, y1, x2, y2 = boxes.T
    w, h = x2 - x1, y2 - y1
    wbin = np.ceil(np.log2(np.maximum(w, 1.0))).astype(np.int64)
    hbin = np.ceil(np.log2(np.maximum(h, 1.0))).astype(np.int64)
    gkey = wbin * 4096 + hbin
    qs, cs = [], []
    for g in np.unique(gkey):
        members = np.flatnonzero(gkey == g)
        cw, ch = max(float(w[members].max()), 1.0), max(float(h[members].max()), 1.0)
        mcx = np.floor(x1[members] / cw).astype(np.int64)
        mcy = np.floor(y1[members] / ch).astype(np.int64)
        cx0 = int(mcx.min()) - 1
        ncols = int(mcx.max()) - cx0 + 3
        key = (mcy - int(mcy.min()) + 1) * ncols + (mcx - cx0)
        srt = np.argsort(key, kind="stable")
        members, key = members[srt], key[srt]
        # query box i: cells x in [floor((x1_i - cw) / cw), floor(x2_i / cw)], rows likewise
        qx_lo = np.clip(np.floor((x1 - cw) / cw).astype(np.int64) - cx0, 0, ncols - 1)
        qx_hi = np.clip(np.floor(x2 / cw).astype(np.int64) - cx0, 0, ncols - 1)
        ry0 = int(mcy.min()) - 1
        qy_lo = np.floor((y1 - ch) / ch).astype(np.int64) - ry0
        qy_hi = np.floor(y2 / ch).astype(np.int64) - ry0
        nrows = int(mcy.max()) - ry0 + 2
        qy_lo, qy_hi = np.clip(qy_lo, 0, nrows - 1), np.clip(qy_hi, 0, nrows - 1)
        rows = np.maximum(qy_hi - qy_lo + 1, 0)
        qi = np.repeat(np.arange(n), rows)
        r = np.repeat(qy_lo, rows) + np.arange(int(rows.sum())) - np.repeat(np.cumsum(rows) - rows, rows)
        lo = np.searchsorted(key, r * ncols + qx_lo[qi], side="left")
        hi = np.searchsorted(key, r * ncols + qx_hi[qi], side="right")
        cnt = hi - lo
        total = int(cnt.sum())
        if total:
            qs.append(np.repeat(qi, cnt))
            cs.append(members[np.repeat(lo, cnt) + np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)])
    if not qs:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    q, c = np.concatenate(qs), np.concatenate(cs)
    keep = q != c
    q, c = q[keep], c[keep]
    iw = np.minimum(x2[q], x2[c]) - np.maximum(x1[q], x1[c])
    ih = np.minimum(y2[q], y2[c]) - np.maximum(y1[q], y1[c])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (x2 - x1) * (y2 - y1)
    a, b = area[q], area[c]
    den = a + b - inter if metric == "iou" else np.minimum(a, b)
    val = np.zeros(len(q), np.float64)
    np.divide(inter, den, out=val, where=den > 0)
    hit = val >= thr
    q, c = q[hit], c[hit]
    order = np.lexsort((c, q))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(q, minlength=n))]).astype(np.int64)
    return indptr, c[order]


def _nms(boxes, scores, metric, thr):
    order = _visit_order(boxes, scores)
    indptr, nbrs = _matches(boxes, metric, thr)
    alive = np.ones(len(order), bool)  # by box index
    keep = []
    for i in order.tolist():
        if alive[i]:
            keep.append(i)
            alive[nbrs[indptr[i]:indptr[i + 1]]] = False  # later matches (earlier ones are settled)
    keep = np.asarray(keep, np.int64)
    return boxes[keep], scores[keep], keep


def _metric(a, b, metric: str) -> float:
    """:func:`pairwise_metric` of two boxes given as lists of Python floats (the same IEEE
    double operations in the same order, without NumPy's per-call cost)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    aa = (a[2] - a[0]) * (a[3] - a[1])
    ab = (b[2] - b[0]) * (b[3] - b[1])
    den = aa + ab - inter if metric == "iou" else min(aa, ab)
    return inter / den if den > 0 else 0.0


def _greedy_nmm(boxes, scores, classes, metric, thr):
    order = _visit_order(boxes, scores)
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    indptr, nbrs = _matches(boxes, metric, thr)
    # each box's matches in visiting order (CSR rows re-sorted by rank), as Python lists: the
    # loop below then touches no NumPy array per box (most boxes match none or one other)
    rows = np.repeat(np.arange(len(order)), np.diff(indptr))
    nbl = nbrs[np.lexsort((rank[nbrs], rows))].tolist()
    ip, rk = indptr.tolist(), rank.tolist()
    bl, sl, cl = boxes.tolist(), scores.tolist(), classes.tolist()
    alive = [True] * len(order)
    out_b, out_s, out_c, keep = [], [], [], []
    for k in order.tolist():
        if not alive[k]:
            continue
        box, score, cls, r = bl[k], sl[k], cl[k], rk[k]
        for j in nbl[ip[k]:ip[k + 1]]:
            if not alive[j] or rk[j] < r:  # taken by an earlier keeper, or visited before k
                continue
            alive[j] = False  # claimed: merged or dropped
            if _metric(box, bl[j], metric) >= thr:
                box = [min(box[0], bl[j][0]), min(box[1], bl[j][1]), max(box[2], bl[j][2]), max(box[3], bl[j][3])]
                if not score > sl[j]:
                    cls = cl[j]
                score = max(score, sl[j])
        out_b.append(box)
        out_s.append(score)
        out_c.append(cls)
        keep.append(k)
    return (np.asarray(out_b, np.float64).reshape(-1, 4), np.asarray(out_s, np.float64),
            np.asarray(out_c, np.int64), np.asarray(keep, np.int64))


def merge_detections(boxes, scores, classes, method: str = "nms", metric: str = "iou",
                     threshold: float = 0.5, class_agnostic: bool = False,
                     max_detections: Optional[int] = None) -> MergeResult:
    """Merge overlapping detections (the module docstring has the rules).

    Args:
        boxes: (N, 4) XYXY (array-like; torch tensors are moved to the CPU).
        scores: (N,).
        classes: (N,) integer class indices.
        method: "nms" or "greedynmm".
        metric: "iou" or "ios".
        threshold: boxes match when their metric is >= this, in (0, 1].
        class_agnostic: merge across classes (else each class on its own).
        max_detections: keep at most this many merged detections (highest scores); None: all.
    Returns:
        :class:`MergeResult`, by decreasing score.
    """
    check_merge_args(method, metric, threshold)
    if max_detections is not None and int(max_detections) < 0:
        raise ValueError(f"max_detections must be >= 0 or None, got {max_detections}")
    b, s, c = (_np(x) for x in (boxes, scores, classes))
    b = b.astype(np.float64).reshape(-1, 4)
    s = s.astype(np.float64).reshape(-1)
    c = c.astype(np.int64).reshape(-1)
    if not len(b) == len(s) == len(c):
        raise ValueError(f"boxes, scores and classes differ in length: {len(b)}, {len(s)}, {len(c)}")
    groups = [np.arange(len(b))] if class_agnostic else [np.flatnonzero(c == k) for k in np.unique(c)]
    parts = []
    for idx in groups:
        if method == "nms":
            gb, gs, gk = _nms(b[idx], s[idx], metric, float(threshold))
            parts.append((gb, gs, c[idx][gk], idx[gk]))
        else:
            gb, gs, gc, gk = _greedy_nmm(b[idx], s[idx], c[idx], metric, float(threshold))
            parts.append((gb, gs, gc, idx[gk]))
    if not parts:
        return MergeResult(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    mb, ms, mc, mk = (np.concatenate([p[i] for p in parts]) for i in range(4))
    order = np.lexsort((mb[:, 3], mb[:, 2], mb[:, 1], mb[:, 0], -ms))
    if max_detections is not None:
        order = order[:int(max_detections)]
    return MergeResult(mb[order], ms[order], mc[order], mk[order])


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)
