"""
HIT-UAV (infrared thermal drone images, 640x512 8-bit grayscale; CC BY 4.0, Suo et al.,
Scientific Data 10, 227 (2023)), ``normal_json`` release:
``hit-uav/annotations/<split>.json`` with images in ``hit-uav/<split>/``.

Its JSON is a dialect of COCO: the annotation list is under ``annotation``, image
entries name their file with ``filename``, category ids start at 0 (0 Person, 1 Car,
2 Bicycle, 3 OtherVehicle, 4 DontCare), and ``bbox`` is top-left x, y, w, h. DontCare
boxes are class-agnostic ignore regions. The grayscale images load as 3-channel
through :func:`sod2.data.io.read_image`.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from .coco_style import load_coco_style_json
from .common import dataset_root, finish_records, require_split

__all__ = ["HITUAV_CLASSES", "HITUAV_SPLITS", "load_hituav", "load_hituav_split", "split_paths"]

HITUAV_CLASSES = ("Person", "Car", "Bicycle", "OtherVehicle")
HITUAV_SPLITS = ("train", "val", "test")
FOLDER = "hit-uav"


def load_hituav(json_file: str, image_root: str, verify: str = "header") -> List[Dict]:
    """Load a HIT-UAV ``normal_json`` file as dataset dicts (sod2 conventions).

    ``verify``: how each image is checked (:func:`~sod2.data.datasets.common.verify_records`:
    ``"header"``, ``"full"`` or ``"none"``)."""
    dicts = load_coco_style_json(json_file, os.path.abspath(image_root), HITUAV_CLASSES,
                                 region_names=("dontcare",), annotations_key="annotation",
                                 file_name_key="filename")
    return finish_records(dicts, json_file, verify)


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Files of ``split`` under ``root`` (default $SOD2_DATASETS/hit-uav)."""
    if split not in HITUAV_SPLITS:
        raise ValueError(f"HIT-UAV split must be one of {HITUAV_SPLITS}, got {split!r}")
    root = root or os.path.join(dataset_root(), FOLDER)
    return {"image_root": os.path.join(root, split),
            "annotations": os.path.join(root, "annotations", f"{split}.json")}


def load_hituav_split(split: str, root: Optional[str] = None, verify: str = "header") -> List[Dict]:
    p = split_paths(split, root)
    require_split(p, "HIT-UAV", root=root)
    return load_hituav(p["annotations"], p["image_root"], verify)
