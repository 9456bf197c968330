"""
TinyPerson (TinyBenchmark): COCO-like json whose annotations carry ``ignore``,
``uncertain``, ``logo`` and ``in_dense_image`` flags, with categories 1 sea_person and
2 earth_person (the "all" task files: 1 person).

Following the benchmark's "tiny person detection" task (TinyBenchmark's dataset notes):

* sea and earth persons are one class ``person``;
* ``ignore`` and ``uncertain`` boxes are ignored boxes (not objects, not dropped);
* ``logo`` boxes (persons pictured on logos and signs) are ignored boxes too
  (``logo_as_ignore``): TinyBenchmark's "erase" data erases ignore, uncertain and logo
  boxes alike, and its documented example logo box also carries ``ignore``; its
  evaluation code reads only ``ignore``/``iscrowd``/``uncertain``, which
  ``logo_as_ignore=False`` reproduces for a file with boxes flagged only ``logo``;
* dense images (an ``in_dense_image`` annotation, or more than 220 boxes:
  ``dense_threshold``) are used neither for training nor for evaluation
  (``skip_dense``; the official ``tiny_set_train.json`` already excludes them,
  ``tiny_set_train_with_dense.json`` does not).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from ..io import DataFormatError
from .coco_style import read_json
from .common import (BoxChecker, check_category, dataset_root, finish_records,
                     make_annotation, require_split, warn_count)

__all__ = ["TINYPERSON_CLASSES", "TINYPERSON_SPLITS", "load_tinyperson",
           "load_tinyperson_split", "split_paths"]

TINYPERSON_CLASSES = ("person",)
# split -> (annotation file under tiny_set/annotations, image folder under tiny_set)
TINYPERSON_SPLITS = {"train": ("tiny_set_train.json", "train"),
                     "test": ("tiny_set_test.json", "test")}
FOLDER = "TinyPerson"
PERSON_NAMES = ("sea_person", "earth_person", "person")
DENSE_THRESHOLD = 220  # TinyBenchmark: an image with more boxes than this is dense
IGNORE_KEYS = ("ignore", "uncertain")


def load_tinyperson(json_file: str, image_root: str, skip_dense: bool = False,
                    dense_threshold: int = DENSE_THRESHOLD, logo_as_ignore: bool = True,
                    verify: str = "header") -> List[Dict]:
    """Load a TinyPerson json as dataset dicts (sod2 conventions, one class ``person``).

    Args:
        json_file: e.g. ``tiny_set/annotations/tiny_set_train.json``.
        image_root: folder that ``file_name`` is relative to (``tiny_set/train``).
        skip_dense: drop dense images (counted warning).
        dense_threshold: an image with more boxes than this is dense (TinyBenchmark: 220).
        logo_as_ignore: boxes flagged ``logo`` are ignored boxes; False keeps a box flagged
            only ``logo`` as a person (counted warning either way).
        verify: how each image is checked (:func:`~sod2.data.datasets.common.verify_records`:
            ``"header"``, ``"full"`` or ``"none"``).
    """
    if isinstance(dense_threshold, bool) or not isinstance(dense_threshold, int) or dense_threshold < 0:
        raise ValueError(f"dense_threshold must be a non-negative integer, got {dense_threshold!r}")
    data = read_json(json_file)
    if not isinstance(data, dict):
        raise DataFormatError(f"{json_file}: expected a JSON object with images and annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(f"{json_file}: missing list '{key}'")
    mapping = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise DataFormatError(f"{json_file}: every category needs 'id' and 'name'")
        if str(c["name"]).lower() not in PERSON_NAMES:
            raise DataFormatError(f"{json_file}: category {c['name']!r} is not a TinyPerson "
                                  f"category (expected one of {PERSON_NAMES})")
        mapping[c["id"]] = 0
    image_root = os.path.abspath(image_root)

    images = {}
    for n, img in enumerate(data["images"]):
        if not isinstance(img, dict):
            raise DataFormatError(f"{json_file}: image #{n}: expected an object")
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise DataFormatError(f"{json_file}: image #{n}: missing '{key}'")
        if "corner" in img:
            # corner files crop the image only in the json: the boxes are in crop coordinates
            raise DataFormatError(f"{json_file}: image #{n} has a 'corner' (sub-image) entry; "
                                  f"load the whole-image file (tiny_set_{{train,test}}.json) instead")
        if img["id"] in images:
            raise DataFormatError(f"{json_file}: image #{n}: duplicate image id {img['id']!r}")
        images[img["id"]] = img

    per_image: Dict = {k: [] for k in images}
    dense = set()
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise DataFormatError(f"{json_file}: annotation #{n}: expected an object")
        if ann.get("image_id") not in per_image:
            raise DataFormatError(f"{json_file}: annotation #{n} (id {ann.get('id')!r}): "
                                  f"unknown image id {ann.get('image_id')!r}")
        per_image[ann["image_id"]].append((n, ann))
        if ann.get("in_dense_image"):
            dense.add(ann["image_id"])
    dense |= {k for k, anns in per_image.items() if len(anns) > dense_threshold}

    checker = BoxChecker(json_file)
    logo_only = 0
    dicts = []
    for image_id, img in images.items():
        if skip_dense and image_id in dense:
            continue
        width, height = int(img["width"]), int(img["height"])
        anns = []
        for n, ann in per_image[image_id]:
            where = f"annotation #{n} (id {ann.get('id')!r})"
            cid = check_category(ann.get("category_id"), mapping, json_file, where)
            box = checker.check(ann.get("bbox"), width, height, where)
            if box is None:
                continue
            ignore = any(bool(ann.get(k, False)) for k in ("iscrowd",) + IGNORE_KEYS)
            if not ignore and bool(ann.get("logo", False)):
                logo_only += 1
                ignore = logo_as_ignore
            anns.append(make_annotation(box, cid, ignore=ignore))
        dicts.append({"file_name": os.path.join(image_root, img["file_name"]),
                      "image_id": image_id, "height": height, "width": width,
                      "annotations": anns})
    checker.report()
    warn_count(json_file, logo_only, "box(es) flagged only 'logo' " + (
        "ignored (logo_as_ignore=False keeps them as persons)" if logo_as_ignore else
        "kept as persons (logo_as_ignore=False)"))
    if skip_dense:
        warn_count(json_file, len(dense), f"dense image(s) skipped (an in_dense_image box or "
                                          f"more than {dense_threshold} boxes); "
                                          f"pass skip_dense=False to keep them")
    return finish_records(dicts, json_file, verify)


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Files of ``split`` under ``root`` (default $SOD2_DATASETS/TinyPerson)."""
    if split not in TINYPERSON_SPLITS:
        raise ValueError(f"TinyPerson split must be one of {sorted(TINYPERSON_SPLITS)}, got {split!r}")
    tiny_set = os.path.join(root or os.path.join(dataset_root(), FOLDER), "tiny_set")
    ann, img = TINYPERSON_SPLITS[split]
    return {"image_root": os.path.join(tiny_set, img),
            "annotations": os.path.join(tiny_set, "annotations", ann)}


def load_tinyperson_split(split: str, root: Optional[str] = None, skip_dense: bool = True,
                          dense_threshold: int = DENSE_THRESHOLD,
                          logo_as_ignore: bool = True, verify: str = "header") -> List[Dict]:
    """Load a split. Dense images are skipped for every split by default: TinyBenchmark
    trains without them and does not use them in evaluation (``skip_dense=False`` keeps
    them, e.g. for ``tiny_set_train_with_dense.json`` style experiments)."""
    p = split_paths(split, root)
    require_split(p, "TinyPerson", root=root)
    return load_tinyperson(p["annotations"], p["image_root"], skip_dense=skip_dense,
                           dense_threshold=dense_threshold, logo_as_ignore=logo_as_ignore, verify=verify)
