"""
Array-based COCO-style box evaluation (NumPy + a small C matching kernel).

It reproduces pycocotools' ``COCOeval`` (evaluate + accumulate) number for number
for any area ranges, maxDets and IoU thresholds, and the SODA-D and TinyPerson
variants through the kind of ground-truth flags it is given (see
:mod:`sod2.evaluation.protocols`). It does not import torch or detectron2, so
``tools/evaluate_json.py`` starts in a fraction of a second.

The inputs are flat arrays, one row per box:

* ground truth ``GroundTruth``: ``image`` (N,) int64 index into the image list,
  ``category`` (N,) int64 index into the category list, ``boxes`` (N, 4) float64
  XYWH, ``area`` (N,) float64, ``crowd`` (N,) bool, ``ignore`` (N,) bool,
  ``id_nonzero`` (N,) bool;
* detections ``Detections``: ``image``, ``category``, ``boxes`` (M, 4) float64 XYWH,
  ``scores`` (M,) float64, in the order the results file lists them.

Outputs follow pycocotools: ``precision`` (T, R, K, A, M) and ``recall``
(T, K, A, M), -1 where a category has no (non-ignored) ground truth.

Non-finite values: a NaN box has NaN IoU with every ground truth, and "NaN < threshold"
is false, so a NaN detection would match anything. :func:`match_boxes` therefore refuses
non-finite boxes and scores; the evaluators remove non-finite detections first with
:func:`drop_nonfinite_detections` and log one warning counting them
(:func:`nonfinite_warning`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .matching import match_groups

__all__ = ["GroundTruth", "Detections", "EvalParams", "EvalResult", "Matches", "match_boxes",
           "accumulate", "evaluate_boxes", "finite_detection_mask", "drop_nonfinite_detections",
           "nonfinite_warning",
           "coco_iou_thresholds", "coco_recall_thresholds"]


def coco_iou_thresholds() -> np.ndarray:
    """0.50:0.05:0.95 built exactly as pycocotools builds it (exact float values matter)."""
    return np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)


def coco_recall_thresholds() -> np.ndarray:
    """The 101 recall points 0:0.01:1, built as pycocotools builds them."""
    return np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)


@dataclass
class GroundTruth:
    """Ground-truth boxes of a dataset as flat arrays (see module docstring).

    ``image_ids``/``category_ids`` hold the original ids; ``image``/``category`` index
    into them. Rows must be in annotation-file order: pycocotools' tie rules depend on it.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    area: np.ndarray
    crowd: np.ndarray
    ignore: np.ndarray
    id_nonzero: np.ndarray = None
    category_names: Optional[List[str]] = None
    # optional, used by the VisDrone protocol: (num_images, 2) heights and widths, and
    # per image an (R, 4) XYWH array of class-agnostic ignored regions
    image_sizes: Optional[np.ndarray] = None
    regions: Optional[List[np.ndarray]] = None
    # optional (N,) bool: the annotation's own ignore/uncertain flags without iscrowd
    # (TinyPerson's miss rate uses these)
    ignore_flag: Optional[np.ndarray] = None

    def __post_init__(self):
        n = len(self.image)
        if self.id_nonzero is None:
            self.id_nonzero = np.ones(n, dtype=bool)
        self.boxes = np.ascontiguousarray(self.boxes, dtype=np.float64).reshape(n, 4)
        for name in ("image", "category", "area", "crowd", "ignore", "id_nonzero"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"GroundTruth.{name} has {len(getattr(self, name))} rows, expected {n}")


@dataclass
class Detections:
    """Detections as flat arrays in results-file order (see module docstring)."""

    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        n = len(self.image)
        self.boxes = np.ascontiguousarray(self.boxes, dtype=np.float64).reshape(n, 4)
        for name in ("category", "scores"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Detections.{name} has {len(getattr(self, name))} rows, expected {n}")


def finite_detection_mask(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Which detections have a finite box and score.

    Args:
        boxes: (N, 4) in any box mode; scores: (N,).
    Returns:
        (N,) bool, False where a coordinate or the score is NaN or +-inf.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    return np.isfinite(boxes).all(axis=1) & np.isfinite(scores)


def drop_nonfinite_detections(dt: "Detections") -> Tuple["Detections", int]:
    """Remove the detections whose box or score is not finite (order kept).

    Returns:
        the finite detections and how many were removed; the caller logs one
        :func:`nonfinite_warning` per evaluation when the count is not 0.
    """
    keep = finite_detection_mask(dt.boxes, dt.scores)
    dropped = int(len(keep) - keep.sum())
    if not dropped:
        return dt, 0
    return Detections(image=dt.image[keep], category=dt.category[keep], boxes=dt.boxes[keep],
                      scores=dt.scores[keep]), dropped


def nonfinite_warning(source: str, dropped: int, total: int) -> str:
    """The one warning an evaluation logs for ``dropped`` of ``total`` non-finite detections."""
    return (f"{source}: {dropped} of {total} detections have a NaN or infinite box or score "
            f"and are not evaluated (they would match any ground truth); a diverged model?")


@dataclass
class EvalParams:
    """Evaluation parameters. ``area_ranges`` maps a bucket name to (lo, hi) in px^2,
    bounds inclusive at both ends as in pycocotools."""

    area_ranges: Dict[str, Tuple[float, float]]
    max_dets: Sequence[int] = (1, 10, 100)
    iou_thresholds: np.ndarray = field(default_factory=coco_iou_thresholds)
    recall_thresholds: np.ndarray = field(default_factory=coco_recall_thresholds)
    # TinyPerson: an unmatched detection covered (IoD >= IoU threshold) by an ignored
    # ground truth is ignored.
    iod_ignore: bool = False

    def __post_init__(self):
        self.max_dets = [int(m) for m in self.max_dets]
        if not self.max_dets or any(m <= 0 for m in self.max_dets):
            raise ValueError(f"max_dets must be positive integers, got {self.max_dets}")
        if list(self.max_dets) != sorted(self.max_dets):
            raise ValueError(f"max_dets must be increasing, got {self.max_dets}")
        self.iou_thresholds = np.asarray(self.iou_thresholds, dtype=np.float64)
        self.recall_thresholds = np.asarray(self.recall_thresholds, dtype=np.float64)
        for name, (lo, hi) in self.area_ranges.items():
            if not lo <= hi:
                raise ValueError(f"area range {name!r}: lower bound {lo} > upper bound {hi}")


@dataclass
class EvalResult:
    params: EvalParams
    precision: np.ndarray  # (T, R, K, A, M)
    recall: np.ndarray  # (T, K, A, M)
    # number of non-ignored ground truths per (category, area range): (K, A)
    num_gt: np.ndarray


def _group_order(image: np.ndarray, category: np.ndarray, num_categories: int) -> np.ndarray:
    """Group key of each row: image-major, category-minor (stable within a group)."""
    return image.astype(np.int64) * num_categories + category.astype(np.int64)


@dataclass
class Matches:
    """Per-detection matching results of :func:`match_boxes`.

    Detections are in group order (image, then category, then descending score with
    file order breaking ties), truncated to ``max_det`` per group:

    * ``dt_index`` (D,): row in the input :class:`Detections`;
    * ``dt_image``, ``dt_category``, ``dt_rank`` (D,): group and rank inside it;
    * ``dt_scores`` (D,) float64;
    * ``dt_matched``, ``dt_ignored`` (A, T, D) bool: matched to a (nonzero-id) ground truth,
      ignored (matched to an ignored ground truth, or unmatched and out of the area range);
    * ``gt_image``, ``gt_category`` (G,) and ``gt_ignored`` (A, G) bool, ground truth in
      group order.
    """

    dt_index: np.ndarray
    dt_image: np.ndarray
    dt_category: np.ndarray
    dt_rank: np.ndarray
    dt_scores: np.ndarray
    dt_matched: np.ndarray
    dt_ignored: np.ndarray
    gt_image: np.ndarray
    gt_category: np.ndarray
    gt_ignored: np.ndarray


def rank_detections(dt: Detections, num_categories: int):
    """Order detections by (image, category) group, then by descending score inside a
    group (np.lexsort is stable: file order breaks ties, as pycocotools' mergesort does).

    Returns:
        perm (D,) row order, group key (D,) in that order, rank (D,) inside the group.
    """
    dkey = _group_order(dt.image, dt.category, max(num_categories, 1))
    dperm = np.lexsort((-dt.scores, dkey))
    dkey_sorted = dkey[dperm]
    if len(dkey_sorted):
        starts = np.r_[0, np.flatnonzero(np.diff(dkey_sorted)) + 1]
        lengths = np.diff(np.r_[starts, len(dkey_sorted)])
        rank = np.arange(len(dkey_sorted)) - np.repeat(starts, lengths)
    else:
        rank = np.zeros(0, dtype=np.int64)
    return dperm, dkey_sorted, rank


def match_boxes(gt: GroundTruth, dt: Detections, area_ranges: np.ndarray,
                iou_thresholds: np.ndarray, max_det: Optional[int] = None,
                iod_mode: int = 0) -> Matches:
    """Greedy matching of every (image, category) group (pycocotools' evaluateImg).

    Args:
        area_ranges: (A, 2) inclusive area bounds in px^2.
        iou_thresholds: (T,) thresholds.
        max_det: keep the top ``max_det`` detections by score per group (None: all).
        iod_mode: fallback of unmatched detections to ignored ground truth: 0 none,
            1 TinyPerson's AP rule (f >= threshold), 2 its miss-rate rule (f > 0.5); see
            sod2/csrc/box_matching.c.

    Raises:
        ValueError: a box, area or score is NaN or infinite (it would match anything).
    """
    if not np.isfinite(gt.boxes).all() or not np.isfinite(gt.area).all():
        raise ValueError("match_boxes: a ground-truth box or area is not finite")
    bad = int((~finite_detection_mask(dt.boxes, dt.scores)).sum())
    if bad:
        raise ValueError(f"match_boxes: {bad} detections have a non-finite box or score; "
                         "remove them first (drop_nonfinite_detections)")
    num_cats = max(len(gt.category_ids), 1)
    area_rng = np.ascontiguousarray(area_ranges, dtype=np.float64).reshape(-1, 2)
    thr = np.ascontiguousarray(iou_thresholds, dtype=np.float64)
    A, T = len(area_rng), len(thr)

    # ground truth grouped by (image, category), file order kept inside a group
    gkey = _group_order(gt.image, gt.category, num_cats)
    gperm = np.argsort(gkey, kind="stable")
    gkey_sorted = gkey[gperm]

    dperm, dkey_sorted, rank = rank_detections(dt, num_cats)
    if max_det is not None:
        keep = rank < max_det
        dperm, dkey_sorted, rank = dperm[keep], dkey_sorted[keep], rank[keep]

    groups = np.union1d(gkey_sorted, dkey_sorted).astype(np.int64)
    gt_off = np.r_[np.searchsorted(gkey_sorted, groups, side="left"), len(gkey_sorted)]
    dt_off = np.r_[np.searchsorted(dkey_sorted, groups, side="left"), len(dkey_sorted)]

    d_boxes = np.ascontiguousarray(dt.boxes[dperm])
    # pycocotools' loadRes sets a detection's area to w * h
    d_area = np.ascontiguousarray(d_boxes[:, 2] * d_boxes[:, 3])
    n_gt, n_dt = len(gperm), len(dperm)
    dt_matched = np.zeros((A, T, n_dt), dtype=np.uint8)
    dt_ignored = np.zeros((A, T, n_dt), dtype=np.uint8)
    gt_ignored = np.zeros((A, n_gt), dtype=np.uint8)
    match_groups(len(groups), n_gt, n_dt, A, T, int(iod_mode),
                 np.ascontiguousarray(gt_off, dtype=np.int64),
                 np.ascontiguousarray(dt_off, dtype=np.int64),
                 np.ascontiguousarray(gt.boxes[gperm]),
                 np.ascontiguousarray(gt.area[gperm], dtype=np.float64),
                 np.ascontiguousarray(gt.crowd[gperm], dtype=np.uint8),
                 np.ascontiguousarray(gt.ignore[gperm], dtype=np.uint8),
                 np.ascontiguousarray(gt.id_nonzero[gperm], dtype=np.uint8),
                 d_boxes, d_area, area_rng, thr, dt_matched, dt_ignored, gt_ignored)
    return Matches(
        dt_index=dperm, dt_image=dkey_sorted // num_cats, dt_category=dkey_sorted % num_cats,
        dt_rank=rank, dt_scores=np.asarray(dt.scores, dtype=np.float64)[dperm],
        dt_matched=dt_matched.view(bool), dt_ignored=dt_ignored.view(bool),
        gt_image=gkey_sorted // num_cats, gt_category=gkey_sorted % num_cats,
        gt_ignored=gt_ignored.view(bool))


def accumulate(matches: Matches, num_categories: int, max_dets: Sequence[int],
               recall_thresholds: np.ndarray):
    """pycocotools' ``accumulate`` on :class:`Matches`, vectorised per category.

    Returns:
        precision (T, R, K, A, M), recall (T, K, A, M), num_gt (K, A): -1 where a
        category has no non-ignored ground truth in that area range.
    """
    A, T = matches.dt_matched.shape[:2]
    K, R, M = num_categories, len(recall_thresholds), len(max_dets)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    num_gt = np.zeros((K, A), dtype=np.int64)
    for a in range(A):
        num_gt[:, a] = np.bincount(matches.gt_category[~matches.gt_ignored[a]], minlength=K)[:K]
    # a category's detections in pycocotools' concatenation order (image, then rank):
    # group order already sorts by image then category, so a stable split keeps it
    cat_order = np.argsort(matches.dt_category, kind="stable")
    bounds = np.searchsorted(matches.dt_category[cat_order], np.arange(K + 1))
    eps = np.spacing(1)
    for k in range(K):
        if not num_gt[k].any():
            continue
        idx_k = cat_order[bounds[k]:bounds[k + 1]]
        for m, md in enumerate(max_dets):
            idx = idx_k[matches.dt_rank[idx_k] < md]
            sel = idx[np.argsort(-matches.dt_scores[idx], kind="mergesort")]
            nd = len(sel)
            for a in range(A):
                npig = num_gt[k, a]
                if npig == 0:
                    continue
                dtm = matches.dt_matched[a][:, sel]
                dtig = matches.dt_ignored[a][:, sel]
                tp_sum = np.cumsum(dtm & ~dtig, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(~dtm & ~dtig, axis=1).astype(dtype=float)
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + eps)
                q = np.zeros((T, R))
                if nd:
                    recall[:, k, a, m] = rc[:, -1]
                    # precision envelope: running max from the right
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                    for t in range(T):
                        inds = np.searchsorted(rc[t], recall_thresholds, side="left")
                        valid = inds < nd
                        q[t, valid] = pr[t, inds[valid]]
                else:
                    recall[:, k, a, m] = 0
                precision[:, :, k, a, m] = q
    return precision, recall, num_gt


def evaluate_boxes(gt: GroundTruth, dt: Detections, params: EvalParams) -> EvalResult:
    """pycocotools ``evaluate`` + ``accumulate`` with ``params``."""
    area_rng = np.array(list(params.area_ranges.values()), dtype=np.float64).reshape(-1, 2)
    matches = match_boxes(gt, dt, area_rng, params.iou_thresholds,
                          max_det=params.max_dets[-1], iod_mode=int(params.iod_ignore))
    precision, recall, num_gt = accumulate(matches, len(gt.category_ids), params.max_dets,
                                           params.recall_thresholds)
    return EvalResult(params=params, precision=precision, recall=recall, num_gt=num_gt)
