"""
AI-TOD v1: ``AI-TOD/annotations/aitod_<split>_v1.json`` (COCO) with images in
``AI-TOD/images/<split>/``; 8 classes, ids 1..8 in the order of ``AITOD_CLASSES``.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from .coco_style import load_coco_style_json
from .common import dataset_root, finish_records, require_split

__all__ = ["AITOD_CLASSES", "AITOD_SPLITS", "load_aitod", "load_aitod_split", "split_paths"]

AITOD_CLASSES = ("airplane", "bridge", "storage-tank", "ship", "swimming-pool", "vehicle",
                 "person", "wind-mill")
AITOD_SPLITS = ("train", "val", "trainval", "test")
FOLDER = "AI-TOD"


def load_aitod(json_file: str, image_root: str, verify: str = "header") -> List[Dict]:
    """Load an AI-TOD json as dataset dicts (sod2 conventions).

    ``verify``: how each image is checked (:func:`~sod2.data.datasets.common.verify_records`:
    ``"header"``, ``"full"`` or ``"none"``)."""
    dicts = load_coco_style_json(json_file, os.path.abspath(image_root), AITOD_CLASSES)
    return finish_records(dicts, json_file, verify)


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Files of ``split`` under ``root`` (default $SOD2_DATASETS/AI-TOD)."""
    if split not in AITOD_SPLITS:
        raise ValueError(f"AI-TOD split must be one of {AITOD_SPLITS}, got {split!r}")
    root = root or os.path.join(dataset_root(), FOLDER)
    return {"image_root": os.path.join(root, "images", split),
            "annotations": os.path.join(root, "annotations", f"aitod_{split}_v1.json")}


def load_aitod_split(split: str, root: Optional[str] = None, verify: str = "header") -> List[Dict]:
    p = split_paths(split, root)
    require_split(p, "AI-TOD", root=root)
    return load_aitod(p["annotations"], p["image_root"], verify)
