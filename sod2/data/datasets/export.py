"""
Writing dataset dicts as the sod2 JSON dialect (see :mod:`sod2.data.datasets.common`):
COCO with ``ignore`` on annotations and ``ignore_regions`` on images, which
:func:`sod2.data.datasets.coco_style.load_coco_style_json` reads back to the same dicts.

Unlike Detectron2's ``convert_to_coco_dict``, nothing is rounded, ``area`` is the box's
w * h, and ignored boxes and regions are kept.
"""
from __future__ import annotations

import collections
import os
from typing import Dict, List, Sequence

from detectron2.structures import BoxMode

from ..io import DataFormatError
from .common import IGNORE_REGION, is_ignored

__all__ = ["to_sod2_json", "summarize"]

# names that load_coco_style_json reads as class-agnostic regions by default
_REGION_NAMES = {"ignore", "ignored", "dontcare", "ignored regions"}


def _xywh(ann: Dict, where: str) -> List[float]:
    mode = ann.get("bbox_mode", BoxMode.XYWH_ABS)
    try:
        box = BoxMode.convert(list(ann["bbox"]), BoxMode(mode), BoxMode.XYWH_ABS)
        return [float(v) for v in box]
    except (KeyError, TypeError, ValueError, AssertionError) as e:
        raise DataFormatError(f"{where}: bad bbox {ann.get('bbox')!r} "
                              f"(mode {mode!r}): {e}") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def to_sod2_json(dataset_dicts: Sequence[Dict], class_names: Sequence[str],
                 image_root: str) -> Dict:
    """Build a sod2-dialect COCO dict from dataset dicts.

    Args:
        dataset_dicts: Detectron2 dataset dicts in sod2 conventions (contiguous
            ``category_id`` in [0, K), -1 for class-agnostic regions).
        class_names: the K class names in contiguous order; written as category ids 1..K.
        image_root: folder that the written ``file_name`` entries are relative to;
            every image must lie under it.
    Returns:
        dict with ``info``, ``images``, ``annotations``, ``categories``. Integer image ids
        are kept; if any id is not an integer, images are renumbered 1..N in order.
    """
    names = [str(n) for n in class_names]
    if len(set(n.lower() for n in names)) != len(names):
        raise ValueError(f"class names must be unique: {names}")
    clash = [n for n in names if n.lower() in _REGION_NAMES]
    if clash:
        raise ValueError(f"class names {clash} would be read back as ignore regions")
    image_root = os.path.abspath(image_root)
    keep_ids = all(_is_int(d.get("image_id")) for d in dataset_dicts)

    images, annotations, seen = [], [], set()
    for n, d in enumerate(dataset_dicts):
        file_name = os.path.abspath(d["file_name"])
        where = f"image #{n} ({d['file_name']})"
        rel = os.path.relpath(file_name, image_root)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            raise DataFormatError(f"{where}: not under the image root {image_root}")
        image_id = d["image_id"] if keep_ids else n + 1
        if image_id in seen:
            raise DataFormatError(f"{where}: duplicate image id {image_id!r}")
        seen.add(image_id)
        entry = {"id": image_id, "file_name": rel.replace(os.sep, "/"),
                 "width": int(d["width"]), "height": int(d["height"]), "ignore_regions": []}
        if "patch" in d:
            entry["patch"] = dict(d["patch"])
        for k, ann in enumerate(d.get("annotations", [])):
            at = f"{where}: annotation #{k}"
            box = _xywh(ann, at)
            cid = ann.get("category_id")
            if cid == IGNORE_REGION:
                entry["ignore_regions"].append(box)
                continue
            if not _is_int(cid) or not 0 <= cid < len(names):
                raise DataFormatError(f"{at}: category_id {cid!r} is not a class index in "
                                      f"[0, {len(names)}) or {IGNORE_REGION} (ignore region)")
            ignore = int(is_ignored(ann))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": cid + 1, "bbox": box, "area": box[2] * box[3],
                                "iscrowd": ignore, "ignore": ignore})
        images.append(entry)
    return {
        "info": {"description": "sod2 JSON dialect: COCO + 'ignore' on annotations and "
                                "'ignore_regions' ([x, y, w, h]) on images"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": ""}
                       for i, name in enumerate(names)],
    }


def summarize(coco: Dict) -> Dict:
    """Counts of a sod2-dialect dict: images, images without objects, objects per class,
    ignored boxes per class, ignore regions."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    objects = collections.Counter({n: 0 for n in names.values()})
    ignored = collections.Counter({n: 0 for n in names.values()})
    with_objects = set()
    for a in coco["annotations"]:
        # `ignore` only, on purpose: this reads the sod2 dialect that to_sod2_json writes,
        # where `ignore` is the flag and iscrowd always equals it
        (ignored if a.get("ignore") else objects)[names[a["category_id"]]] += 1
        if not a.get("ignore"):
            with_objects.add(a["image_id"])
    return {
        "images": len(coco["images"]),
        "images_without_objects": len(coco["images"]) - len(with_objects),
        "objects": dict(objects),
        "ignored_boxes": dict(ignored),
        "ignore_regions": sum(len(i.get("ignore_regions", [])) for i in coco["images"]),
    }
