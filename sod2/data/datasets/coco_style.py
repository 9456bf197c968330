"""
Loader for COCO-style JSON files that carry ignore information (SODA-D, AI-TOD,
DroneSwarms, TinyPerson, HIT-UAV's dialect, the sod2 dialect written by converters).

Detectron2's ``load_coco_json`` cannot be used for these: it asserts that no
annotation has an ``ignore`` key and it maps category ids by position.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Collection, Dict, List, Optional, Sequence

from ..io import DataFormatError
from .common import IGNORE_REGION, BoxChecker, check_category, make_annotation, warn_count

logger = logging.getLogger(__name__)

__all__ = ["read_json", "load_coco_style_json", "category_mapping"]


def read_json(path: str):
    """Parse a JSON file; a missing or malformed file is an error naming it."""
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: annotation file not found")
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from None


def category_mapping(categories: Sequence[Dict], class_names: Optional[Sequence[str]],
                     region_names: Collection[str], source: str) -> Dict[int, int]:
    """Map dataset category ids to contiguous ids (or IGNORE_REGION).

    Args:
        categories: the file's ``categories`` list.
        class_names: the dataset's classes in contiguous order, matched to categories by
            name (case-insensitive); None keeps the file's categories sorted by id.
        region_names: category names that mark class-agnostic ignore regions.
    """
    regions = {n.lower() for n in region_names}
    try:
        cats = {c["id"]: str(c["name"]) for c in categories}
    except (KeyError, TypeError):
        raise DataFormatError(f"{source}: every category needs 'id' and 'name'") from None
    mapping = {cid: IGNORE_REGION for cid, name in cats.items() if name.lower() in regions}
    objects = {cid: name for cid, name in cats.items() if cid not in mapping}
    if class_names is None:
        mapping.update({cid: i for i, cid in enumerate(sorted(objects))})
        return mapping
    by_name = {name.lower(): cid for cid, name in objects.items()}
    for i, name in enumerate(class_names):
        if name.lower() not in by_name:
            raise DataFormatError(f"{source}: category {name!r} not in the file's categories "
                                  f"{sorted(cats.values())}")
        mapping[by_name[name.lower()]] = i
    extra = set(objects) - set(mapping)
    if extra:
        raise DataFormatError(f"{source}: categories {sorted(objects[c] for c in extra)} are "
                              f"not among the dataset's classes {list(class_names)}")
    return mapping


def load_coco_style_json(
    json_file: str,
    image_root: str,
    class_names: Optional[Sequence[str]] = None,
    *,
    region_names: Collection[str] = ("ignore", "ignored", "dontcare", "ignored regions"),
    ignore_keys: Sequence[str] = ("ignore",),
    annotations_key: str = "annotations",
    file_name_key: str = "file_name",
    skip_images: Optional[callable] = None,
) -> List[Dict]:
    """Load a COCO-style file into Detectron2 dataset dicts (sod2 conventions, see
    :mod:`sod2.data.datasets.common`).

    Args:
        json_file: annotation file.
        image_root: folder that image ``file_name`` entries are relative to.
        class_names: contiguous class order (matched by category name); None = by id.
        region_names: category names whose boxes are class-agnostic ignore regions.
        ignore_keys: annotation keys whose truth marks a box as ignored (``iscrowd`` always does).
        annotations_key / file_name_key: the dialect's key names (HIT-UAV uses
            ``annotation`` and ``filename``).
        skip_images: optional predicate on an image entry; True drops that image.

    Unknown image or category ids and images without id/size are errors naming the
    entry; boxes outside the image are clipped, empty ones dropped, both counted.
    """
    data = read_json(json_file)
    if not isinstance(data, dict):
        raise DataFormatError(f"{json_file}: expected a JSON object with images and annotations")
    for key in ("images", annotations_key, "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{json_file}: missing list '{key}'")
    mapping = category_mapping(data["categories"], class_names, region_names, json_file)

    records: Dict = {}
    skipped_ids = set()
    for n, img in enumerate(data["images"]):
        where = f"image #{n}"
        if not isinstance(img, dict):
            raise DataFormatError(f"{json_file}: {where}: expected an object")
        for key in ("id", file_name_key, "width", "height"):
            if key not in img:
                raise DataFormatError(f"{json_file}: {where}: missing '{key}'")
        if skip_images is not None and skip_images(img):
            skipped_ids.add(img["id"])
            continue
        if img["id"] in records:
            raise DataFormatError(f"{json_file}: {where}: duplicate image id {img['id']!r}")
        rec = {
            "file_name": os.path.join(image_root, img[file_name_key]),
            "image_id": img["id"],
            "height": int(img["height"]),
            "width": int(img["width"]),
            "annotations": [],
        }
        if "patch" in img:
            rec["patch"] = dict(img["patch"])
        for r in img.get("ignore_regions", []):
            rec["annotations"].append(make_annotation(r, IGNORE_REGION, ignore=True))
        records[img["id"]] = rec
    warn_count(json_file, len(skipped_ids), "images skipped by the dataset's image filter")

    checker = BoxChecker(json_file)
    for n, ann in enumerate(data[annotations_key]):
        where = f"annotation #{n} (id {ann.get('id')!r})" if isinstance(ann, dict) else f"annotation #{n}"
        if not isinstance(ann, dict):
            raise DataFormatError(f"{json_file}: {where}: expected an object")
        rec = records.get(ann.get("image_id"))
        if rec is None:
            if ann.get("image_id") in skipped_ids:
                continue
            raise DataFormatError(f"{json_file}: {where}: unknown image id {ann.get('image_id')!r}")
        cid = check_category(ann.get("category_id"), mapping, json_file, where)
        box = checker.check(ann.get("bbox"), rec["width"], rec["height"], where)
        if box is None:
            continue
        ignore = cid == IGNORE_REGION or bool(ann.get("iscrowd", 0)) or any(
            bool(ann.get(k, 0)) for k in ignore_keys)
        rec["annotations"].append(make_annotation(box, cid, ignore=ignore))
    checker.report()
    return list(records.values())
