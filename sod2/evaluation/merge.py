"""Merging detections made on patches (tiles) back into whole images."""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Hashable, List, Sequence

import numpy as np
import torch
from detectron2.layers import batched_nms, nms

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
            the same class exceeds this (SODA-D: 0.5, per class; TinyPerson: 0.5,
            class-agnostic).
        class_agnostic: one NMS across classes.
    Returns:
        whole-image id -> ``boxes`` (M, 4) XYXY, ``scores`` (M,), ``classes`` (M,), kept
        boxes sorted by decreasing score.
    """
    grouped: Dict[Hashable, List[Dict]] = defaultdict(list)
    for p in patch_predictions:
        grouped[p["image_id"]].append(p)
    out = {}
    for image_id, preds in grouped.items():
        boxes = np.concatenate([np.asarray(p["boxes"], np.float32).reshape(-1, 4) +
                                np.tile(np.asarray(p["origin"], np.float32), 2) for p in preds])
        scores = np.concatenate([np.asarray(p["scores"], np.float32).reshape(-1) for p in preds])
        classes = np.concatenate([np.asarray(p["classes"], np.int64).reshape(-1) for p in preds])
        b, s, c = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
        keep = nms(b, s, nms_thresh) if class_agnostic else batched_nms(b, s, c, nms_thresh)
        keep = keep.numpy()
        out[image_id] = {"boxes": boxes[keep], "scores": scores[keep], "classes": classes[keep]}
    return out
