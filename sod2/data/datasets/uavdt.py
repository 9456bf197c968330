"""
UAVDT (the DET part of UAV-benchmark-M): frames ``UAV-benchmark-M/Mxxxx/img%06d.jpg``,
boxes in ``UAV-benchmark-MOTD_v1.0/GT/Mxxxx_gt_whole.txt``
(``frame,target_id,x,y,w,h,out_of_view,occlusion,category``; 1 car, 2 truck, 3 bus) and
class-agnostic ignore areas in ``Mxxxx_gt_ignore.txt`` (``frame,id,x,y,w,h,...``).

The 30/20 train/test sequence split is the one used by UFPMP-Det and other UAVDT-DET
works (M_attr). Every frame on disk is an image, also frames without boxes.
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence

from ..io import DataFormatError
from .common import (IGNORE_REGION, BoxChecker, dataset_root, image_size, iter_nonempty_lines,
                     make_annotation, regions_first, require_path)

__all__ = ["UAVDT_CLASSES", "UAVDT_SEQUENCES", "load_uavdt", "load_uavdt_split", "split_paths"]

UAVDT_CLASSES = ("car", "truck", "bus")
UAVDT_SEQUENCES = {
    "train": ("M0101 M0201 M0202 M0204 M0206 M0207 M0210 M0301 M0401 M0402 M0501 M0603 "
              "M0604 M0605 M0702 M0703 M0704 M0901 M0902 M1002 M1003 M1005 M1006 M1008 "
              "M1102 M1201 M1202 M1304 M1305 M1306").split(),
    "test": ("M0203 M0205 M0208 M0209 M0403 M0601 M0602 M0606 M0701 M0801 M0802 M1001 "
             "M1004 M1007 M1009 M1101 M1301 M1302 M1303 M1401").split(),
}
FOLDER = "UAVDT"
_FRAME = re.compile(r"^img(\d+)\.jpg$", re.IGNORECASE)
# image_id = sequence number * _SEQ + frame: unique across sequences and readable
_SEQ = 1_000_000


def _numbers(text: str, path: str, lineno: int, need: int) -> List[float]:
    fields = [f.strip() for f in text.rstrip(",").split(",")]
    if len(fields) < need:
        raise DataFormatError(f"{path}: line {lineno}: expected at least {need} comma-separated "
                              f"fields, got {text!r}")
    try:
        return [float(f) for f in fields[:need]]
    except ValueError:
        raise DataFormatError(f"{path}: line {lineno}: fields must be numbers, got {text!r}") from None


def _frame(v: float, path: str, lineno: int) -> int:
    if not v.is_integer():
        raise DataFormatError(f"{path}: line {lineno}: frame index must be an integer, got {v}")
    return int(v)


def load_uavdt_sequence(seq: str, image_dir: str, gt_dir: str, root: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of one sequence, one per frame file in ``image_dir/seq`` (``root``: the
    dataset folder the caller was given, for messages)."""
    if not re.fullmatch(r"M\d{4}", seq):
        raise ValueError(f"UAVDT sequence names look like 'M0101', got {seq!r}")
    seq_dir = require_path(os.path.join(image_dir, seq), "UAVDT", is_dir=True, root=root)
    whole = require_path(os.path.join(gt_dir, f"{seq}_gt_whole.txt"), "UAVDT", root=root)
    ignore = require_path(os.path.join(gt_dir, f"{seq}_gt_ignore.txt"), "UAVDT", root=root)

    frames = {}
    for f in os.listdir(seq_dir):
        m = _FRAME.match(f)
        if m:
            frames[int(m.group(1))] = os.path.join(seq_dir, f)
    if not frames:
        raise DataFormatError(f"{seq_dir}: no frames named img%06d.jpg")
    # all frames of a sequence come from one camera, so one header gives the size
    width, height = image_size(frames[min(frames)])

    anns: Dict[int, List[Dict]] = {k: [] for k in frames}
    for path, is_region in ((ignore, True), (whole, False)):
        checker = BoxChecker(path)
        for lineno, text in iter_nonempty_lines(path):
            vals = _numbers(text, path, lineno, 6 if is_region else 9)
            frame = _frame(vals[0], path, lineno)
            if frame not in frames:
                raise DataFormatError(
                    f"{os.path.join(seq_dir, 'img%06d.jpg' % frame)}: image file not found "
                    f"(annotated in {path}: line {lineno})")
            if is_region:
                cid = IGNORE_REGION
            else:
                cat = vals[8]
                if not (cat.is_integer() and 1 <= cat <= len(UAVDT_CLASSES)):
                    raise DataFormatError(f"{path}: line {lineno}: unknown category id "
                                          f"{text.split(',')[8].strip()!r} (known: 1 car, 2 truck, 3 bus)")
                cid = int(cat) - 1
            box = checker.check(vals[2:6], width, height, f"line {lineno}")
            if box is not None:
                anns[frame].append(make_annotation(box, cid, ignore=is_region))
        checker.report()

    base = int(seq[1:]) * _SEQ
    return [{"file_name": frames[k], "image_id": base + k, "height": int(height),
             "width": int(width), "annotations": regions_first(anns[k])}
            for k in sorted(frames)]


def load_uavdt(image_dir: str, gt_dir: str, sequences: Sequence[str],
               root: Optional[str] = None) -> List[Dict]:
    """Load UAVDT sequences as dataset dicts (sod2 conventions).

    Args:
        image_dir: ``UAV-benchmark-M`` (one folder per sequence).
        gt_dir: ``UAV-benchmark-MOTD_v1.0/GT``.
        sequences: sequence names such as ``"M0101"``.
        root: the dataset folder the caller was given (named in messages).
    """
    image_dir, gt_dir = os.path.abspath(image_dir), os.path.abspath(gt_dir)
    dicts = []
    for seq in sorted(sequences):
        dicts.extend(load_uavdt_sequence(seq, image_dir, gt_dir, root))
    return dicts


def split_paths(split: str, root: Optional[str] = None) -> Dict[str, str]:
    """Folders of UAVDT under ``root`` (default $SOD2_DATASETS/UAVDT)."""
    if split not in UAVDT_SEQUENCES:
        raise ValueError(f"UAVDT split must be one of {sorted(UAVDT_SEQUENCES)}, got {split!r}")
    root = root or os.path.join(dataset_root(), FOLDER)
    return {"image_root": os.path.join(root, "UAV-benchmark-M"),
            "annotations": os.path.join(root, "UAV-benchmark-MOTD_v1.0", "GT")}


def load_uavdt_split(split: str, root: Optional[str] = None) -> List[Dict]:
    p = split_paths(split, root)
    require_path(p["image_root"], "UAVDT", is_dir=True, root=root)
    require_path(p["annotations"], "UAVDT", is_dir=True, root=root)
    return load_uavdt(p["image_root"], p["annotations"], UAVDT_SEQUENCES[split], root)
