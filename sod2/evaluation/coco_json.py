"""
Reading COCO-format ground-truth and result files into :mod:`sod2.evaluation.cocoeval`
arrays, with pycocotools' selection rules and clear errors for malformed entries.

NumPy only (plus ``orjson`` when installed): used by ``tools/evaluate_json.py``.
"""
from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..errors import UserError
from .cocoeval import Detections, GroundTruth

try:  # optional: 3-5x faster parsing of large result files
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

logger = logging.getLogger(__name__)

__all__ = ["load_json", "ground_truth_from_coco", "detections_from_coco", "EvaluationInputError"]


class EvaluationInputError(UserError):
    """A ground-truth or result file (or entry) that cannot be evaluated."""


def load_json(path: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise EvaluationInputError(f"{path}: cannot read ({e.strerror})") from e
    try:
        return _orjson.loads(data) if _orjson is not None else json.loads(data)
    except ValueError as e:
        raise EvaluationInputError(f"{path}: not valid JSON ({e})") from e


def _box(entry: Dict, where: str) -> List[float]:
    bbox = entry.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise EvaluationInputError(f"{where}: 'bbox' must be [x, y, w, h], got {bbox!r}")
    try:
        vals = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise EvaluationInputError(f"{where}: 'bbox' must hold numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise EvaluationInputError(f"{where}: 'bbox' is not finite: {bbox!r}")
    return vals


def _id(v: Any, where: str, field: str):
    """An id field: an integer or a string (JSON has no other hashable scalar)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise EvaluationInputError(f"{where}: {field!r} must be an integer or a string, got {v!r}")
    return v


def _flag(entry: Dict, key: str, where: str) -> bool:
    """A 0/1 flag (``iscrowd``, ``ignore``, ``uncertain``): absent is 0; "false" is refused."""
    v = entry.get(key, 0)
    if v is True or v is False or (isinstance(v, int) and v in (0, 1)):
        return bool(v)
    raise EvaluationInputError(f"{where}: {key!r} must be true/false or 0/1, got {v!r}")


def _nonneg(entry: Dict, key: str, where: str) -> float:
    v = entry[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise EvaluationInputError(f"{where}: {key!r} must be a finite number >= 0, got {v!r}")
    return float(v)


def ground_truth_from_coco(dataset: Dict, source: str = "<ground truth>",
                           ignore_from: str = "iscrowd") -> GroundTruth:
    """Build :class:`GroundTruth` from a COCO-format dict.

    Args:
        dataset: dict with ``images``, ``annotations`` and ``categories``.
        source: file name used in error messages.
        ignore_from: ``"iscrowd"`` (pycocotools: a ground truth is ignored only if crowd;
            crowd boxes match by intersection over the detection's area and absorb any
            number of detections) or ``"ignore"`` (SODA-D: the annotation's own ``ignore``
            flag; iscrowd is forced to 0 in matching) or ``"ignore_or_crowd"``
            (TinyPerson: ignored if ``ignore``, ``iscrowd`` or ``uncertain``; crowd kept).
    """
    if not isinstance(dataset, dict):
        raise EvaluationInputError(f"{source}: expected a JSON object with images, annotations "
                                   f"and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise EvaluationInputError(f"{source}: missing list '{key}'")
    images, cats = {}, {}
    for n, img in enumerate(dataset["images"]):
        where = f"{source}: image #{n}"
        if not isinstance(img, dict) or "id" not in img:
            raise EvaluationInputError(f"{where}: expected an object with an 'id'")
        iid = _id(img["id"], where, "id")
        for key in ("width", "height"):
            if key in img:
                _nonneg(img, key, f"{where} (id {iid!r})")
        if iid in images:
            raise EvaluationInputError(f"{where}: duplicate image id {iid!r}")
        images[iid] = img
    for n, c in enumerate(dataset["categories"]):
        where = f"{source}: category #{n}"
        if not isinstance(c, dict) or "id" not in c:
            raise EvaluationInputError(f"{where}: expected an object with an 'id'")
        cats[_id(c["id"], where, "id")] = str(c.get("name", c["id"]))
    try:
        image_ids = sorted(images)
        category_ids = sorted(cats)
    except TypeError:
        raise EvaluationInputError(f"{source}: image or category ids mix integers and strings") from None
    img_index = {i: n for n, i in enumerate(image_ids)}
    cat_index = {c: n for n, c in enumerate(category_ids)}

    anns = dataset["annotations"]
    n = len(anns)
    image = np.empty(n, np.int64)
    category = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.float64)
    area = np.empty(n, np.float64)
    crowd = np.zeros(n, bool)
    ignore = np.zeros(n, bool)
    id_nonzero = np.ones(n, bool)
    flagged = np.zeros(n, bool)  # ignore or uncertain, whatever iscrowd says
    keep = np.ones(n, bool)
    missing_area = 0
    for j, ann in enumerate(anns):
        if not isinstance(ann, dict):
            raise EvaluationInputError(f"{source}: annotation #{j}: expected an object, got "
                                       f"{type(ann).__name__}")
        where = f"{source}: annotation #{j} (id {ann.get('id')!r})"
        ii = img_index.get(_id(ann.get("image_id"), where, "image_id"))
        cc = cat_index.get(_id(ann.get("category_id"), where, "category_id"))
        if ii is None or cc is None:  # pycocotools never evaluates these
            keep[j] = False
            continue
        image[j], category[j] = ii, cc
        boxes[j] = _box(ann, where)
        if "area" in ann:
            area[j] = _nonneg(ann, "area", where)
        else:
            missing_area += 1
            area[j] = boxes[j, 2] * boxes[j, 3]
        is_crowd = _flag(ann, "iscrowd", where)
        is_ignore, is_uncertain = _flag(ann, "ignore", where), _flag(ann, "uncertain", where)
        flagged[j] = is_ignore or is_uncertain
        if ignore_from == "iscrowd":
            crowd[j] = ignore[j] = is_crowd
        elif ignore_from == "ignore":
            ignore[j] = is_ignore
        elif ignore_from == "ignore_or_crowd":
            crowd[j] = is_crowd
            ignore[j] = is_crowd or is_ignore or is_uncertain
        else:
            raise ValueError(f"unknown ignore_from {ignore_from!r}")
        id_nonzero[j] = ann.get("id", 1) != 0
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("%s: %d annotations refer to images or categories not listed; "
                       "they are not evaluated (as in pycocotools)", source, dropped)
    if missing_area:
        logger.warning("%s: %d annotations have no 'area'; using w*h", source, missing_area)
    sizes = np.array([[images[i].get("height", 0), images[i].get("width", 0)] for i in image_ids],
                     dtype=np.int64).reshape(-1, 2)
    regions = []
    for i in image_ids:
        r = images[i].get("ignore_regions", [])
        try:
            regions.append(np.asarray(r, dtype=np.float64).reshape(-1, 4))
        except (TypeError, ValueError):
            raise EvaluationInputError(
                f"{source}: image id {i!r}: 'ignore_regions' must be a list of [x, y, w, h]") from None
    return GroundTruth(
        image_ids=np.array(image_ids, dtype=object), category_ids=np.array(category_ids),
        image_sizes=sizes, regions=regions,
        image=image[keep], category=category[keep], boxes=boxes[keep], area=area[keep],
        crowd=crowd[keep], ignore=ignore[keep], id_nonzero=id_nonzero[keep], ignore_flag=flagged[keep],
        category_names=[cats[c] for c in category_ids],
    )


def detections_from_coco(results: Sequence[Dict], gt: GroundTruth,
                         source: str = "<results>") -> Detections:
    """Build :class:`Detections` from a COCO results list (``image_id``, ``category_id``,
    ``bbox`` XYWH, ``score``), checking every entry against the ground truth."""
    if not isinstance(results, list):
        raise EvaluationInputError(f"{source}: a results file must hold a JSON list of detections")
    img_index = {i: n for n, i in enumerate(gt.image_ids.tolist())}
    cat_index = {c: n for n, c in enumerate(gt.category_ids.tolist())}
    n = len(results)
    image = np.empty(n, np.int64)
    category = np.empty(n, np.int64)
    scores = np.empty(n, np.float64)
    keep = np.ones(n, bool)
    try:
        boxes = np.array([r["bbox"] for r in results], dtype=np.float64).reshape(n, 4)
    except (KeyError, TypeError, ValueError):
        boxes = None  # find and name the bad entry below
    for j, r in enumerate(results):
        where = f"{source}: detection #{j}"
        if not isinstance(r, dict):
            raise EvaluationInputError(f"{where}: expected an object, got {type(r).__name__}")
        ii = img_index.get(_id(r.get("image_id"), where, "image_id"))
        if ii is None:
            raise EvaluationInputError(
                f"{where}: image_id {r.get('image_id')!r} is not in the ground truth")
        cc = cat_index.get(_id(r.get("category_id"), where, "category_id"))
        if cc is None:
            keep[j] = False  # pycocotools evaluates only the ground truth's categories
            continue
        s = r.get("score")
        if not isinstance(s, (int, float)) or not math.isfinite(s):
            raise EvaluationInputError(f"{where}: 'score' must be a finite number, got {s!r}")
        image[j], category[j], scores[j] = ii, cc, s
        if boxes is None:
            _box(r, where)
    if boxes is None:
        boxes = np.array([_box(r, f"{source}: detection #{j}") for j, r in enumerate(results)],
                         dtype=np.float64).reshape(n, 4)
    elif not np.isfinite(boxes).all():
        j = int(np.flatnonzero(~np.isfinite(boxes).all(1))[0])
        raise EvaluationInputError(f"{source}: detection #{j}: 'bbox' is not finite")
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("%s: %d detections have a category_id absent from the ground truth; "
                       "not evaluated", source, dropped)
    return Detections(image=image[keep], category=category[keep], boxes=boxes[keep],
                      scores=scores[keep])


def load_coco_pair(gt_path: str, dt_path: str, ignore_from: str = "iscrowd"
                   ) -> Tuple[GroundTruth, Detections]:
    """Load a COCO ground-truth file and a results file."""
    for p in (gt_path, dt_path):
        if not os.path.isfile(p):
            raise EvaluationInputError(f"{p}: no such file")
    gt = ground_truth_from_coco(load_json(gt_path), source=gt_path, ignore_from=ignore_from)
    dt = detections_from_coco(load_json(dt_path), gt, source=dt_path)
    return gt, dt
