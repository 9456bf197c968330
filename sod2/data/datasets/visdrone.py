"""
VisDrone2019-DET: one ``annotations/<stem>.txt`` per ``images/<stem>.jpg``, lines
``x,y,w,h,score,category,truncation,occlusion`` (pixels, top-left origin).

Following the official toolkit: category 0 is a class-agnostic ignored region;
11 ("others") is never evaluated and is dropped; a box with score 0 is an ignored box
of its class; categories 1..10 become contiguous ids 0..9.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from ..io import DataFormatError
from .common import (IGNORE_REGION, BoxChecker, dataset_root, image_size, iter_nonempty_lines,
                     make_annotation, regions_first, require_split, warn_count)

__all__ = ["VISDRONE_CLASSES", "VISDRONE_SPLITS", "load_visdrone", "load_visdrone_split",
           "split_paths"]

VISDRONE_CLASSES = ("pedestrian", "people", "bicycle", "car", "van", "truck", "tricycle",
                    "awning-tricycle", "bus", "motor")
VISDRONE_SPLITS = {"train": "VisDrone2019-DET-train", "val": "VisDrone2019-DET-val",
                   "test-dev": "VisDrone2019-DET-test-dev"}
FOLDER = "VisDrone"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_OTHERS = 11


def _int_field(text: str, path: str, lineno: int, name: str) -> int:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v.is_integer():
        raise DataFormatError(f"{path}: line {lineno}: {name} must be an integer, got {text!r}")
    return int(v)


def parse_visdrone_line(text: str, path: str, lineno: int):
    """Parse one annotation line.

    Returns:
        ([x, y, w, h], score, category). Fields after the sixth are not used.
    """
    # some files end lines with a comma; tolerate it rather than count an empty field
    fields = [f.strip() for f in text.rstrip(",").split(",")]
    if len(fields) < 6:
        raise DataFormatError(f"{path}: line {lineno}: expected at least 6 comma-separated "
                              f"fields (x,y,w,h,score,category,...), got {text!r}")
    try:
        box = [float(v) for v in fields[:4]]
    except ValueError:
        raise DataFormatError(f"{path}: line {lineno}: box fields must be numbers, "
                              f"got {text!r}") from None
    return (box, _int_field(fields[4], path, lineno, "score"),
            _int_field(fields[5], path, lineno, "category"))


def load_visdrone(annotation_dir: str, image_dir: str) -> List[Dict]:
    """Load one VisDrone-DET split as dataset dicts (sod2 conventions).

    Args:
        annotation_dir: folder of ``<stem>.txt`` files; one image per file.
        image_dir: folder holding ``<stem>.jpg`` (or another image extension).
    Image ids are 1..N over the sorted stems, so they are stable across runs; image
    sizes come from the image headers since the txt files do not give them.
    """
    annotation_dir = os.path.abspath(annotation_dir)
    image_dir = os.path.abspath(image_dir)
    stems = sorted(f[:-4] for f in os.listdir(annotation_dir) if f.endswith(".txt"))
    images = {}
    for f in os.listdir(image_dir):
        stem, ext = os.path.splitext(f)
        if ext.lower() in IMAGE_EXTENSIONS:
            images.setdefault(stem, f)
    warn_count(image_dir, len(set(images) - set(stems)),
               f"image(s) without an annotation file in {annotation_dir} -- not used")

    dicts = []
    others = 0
    for image_id, stem in enumerate(stems, start=1):
        txt = os.path.join(annotation_dir, stem + ".txt")
        if stem not in images:
            raise DataFormatError(f"{os.path.join(image_dir, stem + '.jpg')}: image file not "
                                  f"found (annotated in {txt})")
        file_name = os.path.join(image_dir, images[stem])
        width, height = image_size(file_name)
        checker = BoxChecker(txt)
        anns = []
        for lineno, text in iter_nonempty_lines(txt):
            box, score, category = parse_visdrone_line(text, txt, lineno)
            if category == _OTHERS:
                others += 1
                continue
            if category == 0:
                cid, ignore = IGNORE_REGION, True
            elif 1 <= category <= len(VISDRONE_CLASSES):
                cid, ignore = category - 1, score == 0
            else:
                raise DataFormatError(f"{txt}: line {lineno}: unknown category id {category} "
                                      f"(known: 0 ignored region, 1..10 classes, 11 others)")
            box = checker.check(box, width, height, f"line {lineno}")
            if box is not None:
                anns.append(make_annotation(box, cid, ignore=ignore))
        checker.report()
        dicts.append({"file_name": file_name, "image_id": image_id, "height": int(height),
                      "width": int(width), "annotations": regions_first(anns)})
    warn_count(annotation_dir, others, "box(es) dropped: category 11 'others' (not evaluated)")
    return dicts


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Files of ``split`` under the dataset folder ``root`` (default $SOD2_DATASETS/VisDrone)."""
    if split not in VISDRONE_SPLITS:
        raise ValueError(f"VisDrone split must be one of {sorted(VISDRONE_SPLITS)}, got {split!r}")
    base = os.path.join(root or os.path.join(dataset_root(), FOLDER), VISDRONE_SPLITS[split])
    return {"image_root": os.path.join(base, "images"),
            "annotations": os.path.join(base, "annotations")}


def load_visdrone_split(split: str, root: Optional[str] = None) -> List[Dict]:
    p = split_paths(split, root)
    require_split(p, "VisDrone2019-DET", annotations_is_dir=True, root=root)
    return load_visdrone(p["annotations"], p["image_root"])
