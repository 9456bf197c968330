"""
DroneSwarms (released with SR-TOD): ``DroneSwarms/<split>/<split>.json`` (COCO) with
images in ``<split>/JPEGImages/``; one class, ``drone``, matched by category name as
SR-TOD does (the numeric category id is not documented).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from .coco_style import load_coco_style_json
from .common import dataset_root, finish_records, require_split

__all__ = ["DRONESWARMS_CLASSES", "DRONESWARMS_SPLITS", "load_droneswarms",
           "load_droneswarms_split", "split_paths"]

DRONESWARMS_CLASSES = ("drone",)
DRONESWARMS_SPLITS = ("train", "test")
FOLDER = "DroneSwarms"


def load_droneswarms(json_file: str, image_root: str, verify: str = "header") -> List[Dict]:
    """Load a DroneSwarms json as dataset dicts (sod2 conventions).

    ``verify``: how each image is checked (:func:`~sod2.data.datasets.common.verify_records`:
    ``"header"``, ``"full"`` or ``"none"``)."""
    dicts = load_coco_style_json(json_file, os.path.abspath(image_root), DRONESWARMS_CLASSES)
    return finish_records(dicts, json_file, verify)


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Files of ``split`` under ``root`` (default $SOD2_DATASETS/DroneSwarms)."""
    if split not in DRONESWARMS_SPLITS:
        raise ValueError(f"DroneSwarms split must be one of {DRONESWARMS_SPLITS}, got {split!r}")
    base = os.path.join(root or os.path.join(dataset_root(), FOLDER), split)
    return {"image_root": os.path.join(base, "JPEGImages"),
            "annotations": os.path.join(base, f"{split}.json")}


def load_droneswarms_split(split: str, root: Optional[str] = None, verify: str = "header") -> List[Dict]:
    p = split_paths(split, root)
    require_split(p, "DroneSwarms", root=root)
    return load_droneswarms(p["annotations"], p["image_root"], verify)
