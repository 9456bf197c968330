"""
Cutting large images into overlapping patches (SODA-D's protocol, any dataset).

Rules (SODA-D's ``img_split`` tool, with size and stride configurable):

* patch origins along an axis are 0, stride, 2*stride, ...; the last patch snaps to the
  image edge (origin = size - patch); an image smaller than a patch is padded at the
  bottom/right with ``pad_value``;
* in training mode the tiled extent is first cut to the annotations' extent + 5 px and
  only patches that contain annotations are kept;
* a box cut by the patch border is clipped to the patch; it becomes ignored if its
  clipped area is <= ``min_area_frac`` of its full area; boxes that only touch the
  border are dropped;
* class-agnostic ignore regions are clipped like boxes and kept as regions; with
  ``fill_ignore`` their pixels are painted (except where an object box lies), as
  SODA-D does with value 0.

Each patch's dataset dict carries ``patch = {"image_id", "file_name", "origin",
"width", "height"}`` (the whole image it was cut from), which the evaluator uses to
merge detections back onto whole images.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.structures import BoxMode

from .datasets.common import IGNORE_REGION, make_annotation
from .mapper import fill_ignore_regions

__all__ = ["patch_origins", "split_record", "iter_patches"]


def patch_origins(size: int, patch: int, stride: int) -> List[int]:
    """Origins of the patches along one axis of length ``size``.

    >>> patch_origins(1920, 800, 650)
    [0, 650, 1120]
    """
    if patch <= 0 or stride <= 0:
        raise ValueError(f"patch size and stride must be positive, got {patch}, {stride}")
    if size <= patch:
        return [0]
    out, o = [], 0
    while True:
        if o + patch >= size:
            out.append(size - patch)
            return out
        out.append(o)
        o += stride


def _xyxy(a: Dict) -> np.ndarray:
    return np.asarray(BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS), np.float64)


def split_record(record: Dict, patch_size: int = 800, stride: int = 650,
                 min_area_frac: float = 0.4, train_mode: bool = False
                 ) -> List[Tuple[Tuple[int, int], List[Dict]]]:
    """Plan the patches of one image.

    Args:
        record: a dataset dict (``width``, ``height``, ``annotations``).
        patch_size, stride: patch side and step in pixels.
        min_area_frac: clipped boxes keeping at most this fraction of their area are ignored.
        train_mode: cut the extent to the annotations + 5 px and keep only patches with
            annotations.
    Returns:
        list of ((x0, y0), annotations in patch coordinates) per kept patch.
    """
    W, H = int(record["width"]), int(record["height"])
    annos = record.get("annotations", [])
    boxes = np.array([_xyxy(a) for a in annos]).reshape(-1, 4)
    if train_mode:
        if not annos:
            return []
        # SODA-D's extent: max of int(x) + int(w) (each term truncated), plus 5
        xywh = np.array([BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
                         for a in annos], np.float64)
        W = min(W, int(np.max(np.trunc(xywh[:, 0]) + np.trunc(xywh[:, 2]))) + 5)
        H = min(H, int(np.max(np.trunc(xywh[:, 1]) + np.trunc(xywh[:, 3]))) + 5)
    W, H = max(W, patch_size), max(H, patch_size)  # small images are padded
    out = []
    for x0 in patch_origins(W, patch_size, stride):
        for y0 in patch_origins(H, patch_size, stride):
            px1, py1 = x0 + patch_size, y0 + patch_size
            new = []
            for a, b in zip(annos, boxes):
                ix0, iy0 = max(b[0], x0), max(b[1], y0)
                ix1, iy1 = min(b[2], px1), min(b[3], py1)
                if ix1 <= ix0 or iy1 <= iy0:
                    continue
                full = (b[2] - b[0]) * (b[3] - b[1])
                kept = (ix1 - ix0) * (iy1 - iy0)
                cid = int(a["category_id"])
                # `ignore` only, on purpose: the records come from sod2's loaders, where
                # iscrowd mirrors it, and make_annotation below writes both flags again
                ignore = bool(a.get("ignore", 0)) or (cid != IGNORE_REGION and kept <= min_area_frac * full)
                new.append(make_annotation([ix0 - x0, iy0 - y0, ix1 - ix0, iy1 - iy0], cid, ignore=ignore))
            if train_mode and not [a for a in new if a["category_id"] != IGNORE_REGION]:
                continue
            out.append(((x0, y0), new))
    return out


def iter_patches(record: Dict, image: np.ndarray, patch_size: int = 800, stride: int = 650,
                 min_area_frac: float = 0.4, train_mode: bool = False,
                 fill_ignore: Optional[Sequence[float]] = None, pad_value: float = 0
                 ) -> Iterator[Tuple[np.ndarray, Dict]]:
    """Yield (patch image (P, P, 3) uint8, patch dataset dict without ``file_name``).

    Args:
        record: dataset dict of ``image``.
        image: (H, W, 3) uint8 image of ``record``.
        fill_ignore: colour for class-agnostic ignore regions (None: keep pixels).
        pad_value: colour of the padding of images smaller than a patch.
    """
    H, W = image.shape[:2]
    if (H, W) != (int(record["height"]), int(record["width"])):
        raise ValueError(f"{record.get('file_name')}: image is {W}x{H} but the annotation says "
                         f"{record['width']}x{record['height']}")
    if fill_ignore is not None:
        image = fill_ignore_regions(image, record.get("annotations", []), fill_ignore)
    P = patch_size
    for (x0, y0), annos in split_record(record, patch_size, stride, min_area_frac, train_mode):
        patch = np.full((P, P, image.shape[2]), pad_value, dtype=image.dtype)
        crop = image[y0:y0 + P, x0:x0 + P]
        patch[:crop.shape[0], :crop.shape[1]] = crop
        yield patch, {
            "height": P, "width": P, "annotations": annos,
            "patch": {"image_id": record["image_id"],
                      "file_name": record["file_name"], "origin": [int(x0), int(y0)],
                      "width": int(record["width"]), "height": int(record["height"])},
        }
