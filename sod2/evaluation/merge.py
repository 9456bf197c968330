"""Merging detections made on patches (tiles) back into whole images.

The merge itself is sod2's one implementation, :func:`sod2.inference.merge.merge_detections`
(which sliced inference uses too).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Hashable, List, Sequence

import numpy as np

from ..inference.merge import merge_detections
from .cocoeval import finite_detection_mask

__all__ = ["merge_patch_predictions"]


def merge_patch_predictions(
    patch_predictions: Sequence[Dict],
    nms_thresh: float = 0.5,
    class_agnostic: bool = False,
) -> Dict[Hashable, Dict[str, np.ndarray]]:
    """Shift patch detections by their patch origin and run NMS per whole image.

    Args:
        patch_predictions: one dict per patch with ``image_id`` (of the whole image),
            ``origin`` (x0, y0), ``boxes`` (N, 4) XYXY in patch pixels, ``scores`` (N,),
            ``classes`` (N,).
        nms_thresh: a box is suppressed when its IoU with a kept, higher-scoring box of
            the same class exceeds this (Detectron2's NMS semantics; SODA-D: 0.5, per
            class; TinyPerson: 0.5, class-agnostic).
        class_agnostic: one NMS across classes.
    Returns:
        whole-image id -> ``boxes`` (M, 4) float32 XYXY, ``scores`` (M,) float32,
        ``classes`` (M,) int64, kept boxes sorted by decreasing score.
    Raises:
        ValueError: a box or score is NaN or infinite (NMS would keep or suppress it
            arbitrarily); remove those first (:func:`~sod2.evaluation.cocoeval.finite_detection_mask`,
            as :class:`~sod2.evaluation.evaluator.ScaleBucketEvaluator` does).
    """
    grouped: Dict[Hashable, List[Dict]] = defaultdict(list)
    for p in patch_predictions:
        bad = int((~finite_detection_mask(p["boxes"], p["scores"])).sum())
        if bad:
            raise ValueError(f"patch of image {p['image_id']!r} at {list(p['origin'])}: {bad} detections "
                             "have a non-finite box or score; remove them before merging")
        grouped[p["image_id"]].append(p)
    out = {}
    for image_id, preds in grouped.items():
        boxes = np.concatenate([np.asarray(p["boxes"], np.float32).reshape(-1, 4) +
                                np.tile(np.asarray(p["origin"], np.float32), 2) for p in preds])
        scores = np.concatenate([np.asarray(p["scores"], np.float32).reshape(-1) for p in preds])
        classes = np.concatenate([np.asarray(p["classes"], np.int64).reshape(-1) for p in preds])
        if nms_thresh >= 1.0:  # no IoU exceeds 1: nothing is suppressed
            order = np.lexsort((boxes[:, 3], boxes[:, 2], boxes[:, 1], boxes[:, 0], -scores))
            out[image_id] = {"boxes": boxes[order], "scores": scores[order], "classes": classes[order]}
            continue
        # "exceeds": metric >= the next float64 above the threshold
        m = merge_detections(boxes, scores, classes, method="nms", metric="iou",
                             threshold=float(np.nextafter(float(nms_thresh), np.inf)),
                             class_agnostic=class_agnostic)
        out[image_id] = {"boxes": boxes[m.keep], "scores": scores[m.keep], "classes": classes[m.keep]}
    return out
