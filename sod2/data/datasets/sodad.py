"""
SODA-D (small object detection in driving scenes).

* Whole images: ``SODA-D/rawData/Annotations/<split>.json`` with images in
  ``rawData/Images/``. Categories 1..9 are the classes, category 10 ``ignore`` marks
  class-agnostic ignore regions, and an annotation's ``ignore`` flag marks an ignored
  box of its class.
* Patches: ``SODA-D/patches/<split>.json`` (sod2 dialect, written by
  ``tools/split_images.py``) with images in ``patches/<split>/``; each image entry
  names the whole image it was cut from (``patch``).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional

from .coco_style import load_coco_style_json
from .common import dataset_root, finish_records, require_split

__all__ = ["SODAD_CLASSES", "SODAD_SPLITS", "load_sodad", "load_sodad_split",
           "load_sodad_patches_split", "split_paths", "patch_split_paths"]

SODAD_CLASSES = ("people", "rider", "bicycle", "motor", "vehicle", "traffic-sign",
                 "traffic-light", "traffic-camera", "warning-cone")
SODAD_SPLITS = ("train", "val", "test")
FOLDER = "SODA-D"


def load_sodad(json_file: str, image_root: str, verify: str = "header") -> List[Dict]:
    """Load a SODA-D json (raw or sod2-dialect patches) as dataset dicts (sod2 conventions).

    ``verify``: how each image is checked (:func:`~sod2.data.datasets.common.verify_records`:
    ``"header"``, ``"full"`` or ``"none"``)."""
    dicts = load_coco_style_json(json_file, os.path.abspath(image_root), SODAD_CLASSES,
                                 region_names=("ignore",))
    return finish_records(dicts, json_file, verify)


def _check_split(split: str) -> None:
    if split not in SODAD_SPLITS:
        raise ValueError(f"SODA-D split must be one of {SODAD_SPLITS}, got {split!r}")


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Whole-image files of ``split`` under ``root`` (default $SOD2_DATASETS/SODA-D)."""
    _check_split(split)
    raw = os.path.join(root or os.path.join(dataset_root(), FOLDER), "rawData")
    return {"image_root": os.path.join(raw, "Images"),
            "annotations": os.path.join(raw, "Annotations", f"{split}.json")}


def patch_split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Patch files of ``split`` under ``root`` (default $SOD2_DATASETS/SODA-D)."""
    _check_split(split)
    patches = os.path.join(root or os.path.join(dataset_root(), FOLDER), "patches")
    return {"image_root": os.path.join(patches, split),
            "annotations": os.path.join(patches, f"{split}.json")}


def _load(p: Dict[str, str], what: str, root: Optional[str], verify: str) -> List[Dict]:
    require_split(p, what, root=root)
    return load_sodad(p["annotations"], p["image_root"], verify)


def load_sodad_split(split: str, root: Optional[str] = None, verify: str = "header") -> List[Dict]:
    return _load(split_paths(split, root), "SODA-D", root, verify)


def load_sodad_patches_split(split: str, root: Optional[str] = None, verify: str = "header") -> List[Dict]:
    return _load(patch_split_paths(split, root), "SODA-D patches (tools/split_images.py)", root, verify)
