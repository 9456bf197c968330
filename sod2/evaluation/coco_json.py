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
from .cocoeval import Detections, GroundTruth, drop_nonfinite_detections, nonfinite_warning

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
    if _orjson is not None:
        try:
            return _orjson.loads(data)
        except ValueError:
            pass  # retry with the standard parser: the NaN/Infinity literals it accepts
            # (Python writes them) are then treated alike with or without orjson
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise EvaluationInputError(f"{path}: not valid JSON ({e})") from e


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _box(entry: Dict, where: str, ground_truth: bool) -> List[float]:
    """``[x, y, w, h]`` of four numbers. Ground truth: finite, ``w >= 0`` and ``h >= 0``
    (zero-size boxes are kept, as pycocotools keeps them). Detections may be non-finite
    (dropped later, counted) or of negative size (evaluated as pycocotools does)."""
    bbox = entry.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise EvaluationInputError(f"{where}: 'bbox' must be [x, y, w, h], got {bbox!r}")
    if not all(_is_number(v) for v in bbox):
        raise EvaluationInputError(f"{where}: 'bbox' must hold numbers, got {bbox!r}")
    vals = [float(v) for v in bbox]
    if ground_truth:
        if not all(math.isfinite(v) for v in vals):
            raise EvaluationInputError(f"{where}: 'bbox' is not finite: {bbox!r}")
        if vals[2] < 0 or vals[3] < 0:
            raise EvaluationInputError(f"{where}: 'bbox' has a negative width or height: {bbox!r} "
                                       f"(COCO boxes are [x, y, w, h] with w, h >= 0)")
    return vals


def _id(v: Any, where: str, field: str):
    """An id field: an integer or a string (JSON has no other hashable scalar)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        if isinstance(v, float) and v.is_integer():
            return int(v)
        raise EvaluationInputError(f"{where}: {field!r} must be an integer or a string, got {v!r}")
    return v


def _listed_id(v: Any, id_type: type, where: str, field: str, listing: str):
    """An annotation's or detection's ``image_id``/``category_id``, of the type of the ids
    that the ground truth's ``images``/``categories`` list: ``"1"`` never stands for 1."""
    v = _id(v, where, field)
    if id_type is not None and not isinstance(v, id_type):
        kind = {int: "integers", str: "strings"}[id_type]
        raise EvaluationInputError(f"{where}: {field} {v!r} is a {type(v).__name__} but the ground "
                                   f"truth's {listing} ids are {kind}")
    return v


def _id_type(ids: Sequence) -> type:
    """int or str: the type of a (non-mixed) id list; None when empty."""
    return (str if isinstance(ids[0], str) else int) if len(ids) else None


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
    img_type, cat_type = _id_type(image_ids), _id_type(category_ids)

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
        ii = img_index.get(_listed_id(ann.get("image_id"), img_type, where, "image_id", "image"))
        cc = cat_index.get(_listed_id(ann.get("category_id"), cat_type, where, "category_id", "category"))
        if ii is None or cc is None:  # pycocotools never evaluates these
            keep[j] = False
            continue
        image[j], category[j] = ii, cc
        boxes[j] = _box(ann, where, ground_truth=True)
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
    ``bbox`` XYWH, ``score``), checking every entry against the ground truth.

    Refused (:class:`EvaluationInputError` naming the file and entry): an entry that is not
    an object, an ``image_id`` absent from the ground truth, an id of another type than the
    ground truth's (``"1"`` for 1), a ``bbox`` that is not four numbers, a ``score`` that is
    not a number. Dropped with one warning that counts them: detections of a category the
    ground truth does not list (as pycocotools), and detections with a NaN or infinite box or
    score (as :class:`~sod2.evaluation.evaluator.ScaleBucketEvaluator`; they would match any
    ground truth). Boxes of negative width or height are kept and scored as pycocotools
    scores them: they overlap nothing, so they are never true positives.
    """
    if not isinstance(results, list):
        raise EvaluationInputError(f"{source}: a results file must hold a JSON list of detections")
    img_index = {i: n for n, i in enumerate(gt.image_ids.tolist())}
    cat_index = {c: n for n, c in enumerate(gt.category_ids.tolist())}
    img_type, cat_type = _id_type(gt.image_ids.tolist()), _id_type(gt.category_ids.tolist())
    n = len(results)
    image = np.empty(n, np.int64)
    category = np.empty(n, np.int64)
    scores = np.empty(n, np.float64)
    keep = np.ones(n, bool)
    try:  # fast path: every bbox is a list of 4 numbers
        boxes = np.array([r["bbox"] for r in results])
        if boxes.dtype.kind not in "if" or boxes.shape != (n, 4):
            boxes = None
    except (KeyError, TypeError, ValueError):
        boxes = None  # find and name the bad entry below
    for j, r in enumerate(results):
        where = f"{source}: detection #{j}"
        if not isinstance(r, dict):
            raise EvaluationInputError(f"{where}: expected an object, got {type(r).__name__}")
        iid = _listed_id(r.get("image_id"), img_type, where, "image_id", "image")
        ii = img_index.get(iid)
        if ii is None:
            raise EvaluationInputError(f"{where}: image_id {iid!r} is not in the ground truth")
        cc = cat_index.get(_listed_id(r.get("category_id"), cat_type, where, "category_id", "category"))
        s = r.get("score")
        if not _is_number(s):
            raise EvaluationInputError(f"{where}: 'score' must be a number, got {s!r}")
        if boxes is None:
            _box(r, where, ground_truth=False)
        if cc is None:
            keep[j] = False  # pycocotools evaluates only the ground truth's categories
            continue
        image[j], category[j], scores[j] = ii, cc, s
    if boxes is None:
        boxes = np.array([r["bbox"] for r in results], dtype=np.float64).reshape(n, 4)
    dropped = int((~keep).sum())
    if dropped:
        logger.warning("%s: %d detections have a category_id absent from the ground truth; "
                       "not evaluated", source, dropped)
    dt, nonfinite = drop_nonfinite_detections(Detections(
        image=image[keep], category=category[keep], boxes=boxes.astype(np.float64)[keep],
        scores=scores[keep]))
    if nonfinite:
        logger.warning(nonfinite_warning(source, nonfinite, int(keep.sum())))
    return dt


def load_coco_pair(gt_path: str, dt_path: str, ignore_from: str = "iscrowd"
                   ) -> Tuple[GroundTruth, Detections]:
    """Load a COCO ground-truth file and a results file."""
    for p in (gt_path, dt_path):
        if not os.path.isfile(p):
            raise EvaluationInputError(f"{p}: no such file")
    gt = ground_truth_from_coco(load_json(gt_path), source=gt_path, ignore_from=ignore_from)
    dt = detections_from_coco(load_json(dt_path), gt, source=dt_path)
    return gt, dt
