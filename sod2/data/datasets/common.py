"""
Conventions and helpers shared by every sod2 dataset.

Dataset dicts follow Detectron2's standard format. Each annotation dict has::

    {"bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS,
     "category_id": int,   # contiguous class index, -1 for a class-agnostic ignore region
     "iscrowd": 0 | 1,     # 1 exactly when "ignore" is 1
     "ignore": 0 | 1,      # ignore region or ignore-flagged box
     "area": float}        # w * h in original image pixels

``iscrowd`` mirrors ``ignore`` so that Detectron2's own code paths (``DatasetMapper``,
``print_instances_class_histogram``, pycocotools) never turn an ignored box into an
object, while sod2's mapper and evaluator read ``ignore`` to use them.
:func:`is_ignored` (either flag: also right for Detectron2's COCO records, which carry
only ``iscrowd``) and :func:`is_ignore_region` are the one test of these conventions that
sod2's mappers, evaluator, preflight and drawing use.

Patch datasets add ``"patch": {"image_id", "file_name", "origin": [x0, y0], "width",
"height"}`` naming the whole image a patch was cut from and where.

The sod2 JSON dialect (what converters write) is COCO plus ``ignore`` on annotations
(class-specific ignored boxes, written with ``iscrowd: 1`` so that plain pycocotools
also ignores them) and ``ignore_regions: [[x, y, w, h], ...]`` on images
(class-agnostic regions, which plain pycocotools does not see).

Loaders list an image's class-agnostic regions before its other annotations
(:func:`regions_first`, :func:`finish_records`): that is the order in which the sod2
dialect reloads them, so a dataset exported with :mod:`sod2.data.datasets.export` loads
back to identical dicts.
A registered dataset whose files are absent fails with :func:`require_path`'s error,
which names the expected path and points to datasets/README.md. Formats without image
sizes (VisDrone, UAVDT) read them from the image header with :func:`image_size`
(:func:`sod2.data.io.image_size`: the upright size, EXIF orientation applied as
:func:`sod2.data.io.read_image` applies it; so are the sizes that :func:`verify_records`
compares with the listed ones).
Loaders of formats that list sizes check every image when they load it
(:func:`finish_records`): by default its header, end marker and size (cheap: no pixels
are decoded); their ``verify`` argument selects ``"full"`` decoding or ``"none"``
(``tools/convert_dataset.py --verify-images``).
"""
from __future__ import annotations

import collections
import difflib
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from ..io import VERIFY_LEVELS, DataFormatError, image_size, verify_image

logger = logging.getLogger(__name__)

__all__ = ["dataset_root", "register_dataset", "make_annotation", "BoxChecker",
           "IGNORE_REGION", "DataFormatError", "require_path", "regions_first", "image_size",
           "finish_records", "require_split", "verify_records",
           "require_registered", "is_ignored", "is_ignore_region"]

IGNORE_REGION = -1  # category_id of a class-agnostic ignore region


def is_ignored(ann: Dict) -> bool:
    """True when the annotation is not an object to train on or to count: flagged
    ``ignore`` (sod2) or ``iscrowd`` (COCO, Detectron2). Class-specific ignored boxes and
    class-agnostic ignore regions both are; absent flags count as 0."""
    return bool(ann.get("ignore", 0) or ann.get("iscrowd", 0))


def is_ignore_region(ann: Dict) -> bool:
    """True for a class-agnostic ignore region: ``category_id == IGNORE_REGION`` and
    ignored (:func:`is_ignored`). A class-specific ignored box (``category_id >= 0``) is
    not a region."""
    return ann.get("category_id") == IGNORE_REGION and is_ignored(ann)


def dataset_root() -> str:
    """``$SOD2_DATASETS`` (default ``./datasets``), read when a dataset is loaded."""
    return os.path.expanduser(os.environ.get("SOD2_DATASETS", "datasets"))


def require_path(path: str, dataset: str, is_dir: bool = False, root: Optional[str] = None) -> str:
    """Return ``path`` if it exists, else raise DataFormatError naming it.

    Args:
        dataset: the dataset's name as datasets/README.md lists it (for the message).
        root: the dataset folder the caller was given (``--root``), if any: the message
            then names it instead of ``$SOD2_DATASETS``.
    """
    if (os.path.isdir(path) if is_dir else os.path.isfile(path)):
        return path
    where = (f"the given root {os.path.abspath(root)!r}" if root else
             f"$SOD2_DATASETS (now {os.path.abspath(dataset_root())!r})")
    raise DataFormatError(
        f"{path}: {'folder' if is_dir else 'file'} not found. {dataset} is expected under "
        f"{where} in the layout described in datasets/README.md")


def require_split(paths: Dict[str, str], dataset: str, annotations_is_dir: bool = False,
                  root: Optional[str] = None) -> Dict[str, str]:
    """:func:`require_path` on a split's ``annotations`` (file, or folder) and ``image_root``."""
    require_path(paths["annotations"], dataset, is_dir=annotations_is_dir, root=root)
    require_path(paths["image_root"], dataset, is_dir=True, root=root)
    return paths


def _check_one(d: Dict, level: str) -> Optional[str]:
    """The error message for one record's image, or None when it is usable."""
    try:
        size = verify_image(d["file_name"], level)
    except DataFormatError as e:
        return str(e)
    if size is not None and "width" in d and "height" in d and \
            size != (int(d["width"]), int(d["height"])):
        return (f"{d['file_name']}: image is {size[0]}x{size[1]} but the annotation says "
                f"{d['width']}x{d['height']}")
    return None


def verify_records(dicts: List[Dict], source: str, verify: str = "header") -> List[Dict]:
    """Check every record's image file (missing, undecodable, truncated, or of another size
    than the record says).

    Args:
        verify: ``"header"`` (header, end marker and size; no pixels decoded), ``"full"``
            (decoded as training does) or ``"none"`` (the file must exist); see
            :func:`sod2.data.io.verify_image`.
    Raises:
        DataFormatError: naming the first bad image (in dataset order), ``source`` and how
            many images are bad.
        ValueError: ``verify`` is not one of these.
    """
    if verify not in VERIFY_LEVELS:
        raise ValueError(f"image verification must be one of {VERIFY_LEVELS}, got {verify!r}")
    level = verify
    missing = [d["file_name"] for d in dicts if not os.path.isfile(d["file_name"])]
    if missing:
        raise DataFormatError(f"{missing[0]}: image file not found (listed in {source}; "
                              f"{len(missing)} of {len(dicts)} images missing)")
    if level == "none" or not dicts:
        return dicts
    workers = 1 if len(dicts) < 64 else min(8, (os.cpu_count() or 1) * 2)
    if workers == 1:
        errors = [_check_one(d, level) for d in dicts]
    else:  # header reads are I/O bound
        with ThreadPoolExecutor(workers) as pool:
            errors = list(pool.map(lambda d: _check_one(d, level), dicts))
    bad = [e for e in errors if e]
    if bad:
        raise DataFormatError(f"{bad[0]} (listed in {source}; {len(bad)} of {len(dicts)} "
                              f"images unusable)")
    return dicts


def regions_first(annotations: List[Dict]) -> List[Dict]:
    """Stable reorder: class-agnostic ignore regions, then the other annotations."""
    return ([a for a in annotations if a["category_id"] == IGNORE_REGION]
            + [a for a in annotations if a["category_id"] != IGNORE_REGION])


def finish_records(dicts: List[Dict], source: str, verify: str = "header") -> List[Dict]:
    """Put each image's regions first (:func:`regions_first`) and check every image file
    at level ``verify`` (:func:`verify_records`), so that a missing, empty, truncated or
    undecodable image, or one of another size than listed, fails at load time naming it
    and ``source``."""
    verify_records(dicts, source, verify)
    for d in dicts:
        d["annotations"] = regions_first(d["annotations"])
    return dicts


def require_registered(name: str) -> str:
    """Return ``name`` if it is a registered dataset, else raise ValueError naming the
    closest registered names."""
    names = DatasetCatalog.list()
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close else
            "datasets/README.md lists the registered names")
    raise ValueError(f"dataset {name!r} is not registered ({hint})")


def register_dataset(name: str, loader: Callable[[], List[Dict]], **metadata) -> None:
    """Register ``loader`` under ``name`` with ``metadata``; a second call is a no-op.

    The loader runs only when the dataset is used (``DatasetCatalog.get``).
    """
    if name in DatasetCatalog.list():
        return
    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**metadata)


def make_annotation(bbox: Sequence[float], category_id: int, ignore: bool = False) -> Dict:
    """An annotation dict in the convention above. ``bbox`` is XYWH in pixels."""
    x, y, w, h = (float(v) for v in bbox)
    return {
        "bbox": [x, y, w, h],
        "bbox_mode": BoxMode.XYWH_ABS,
        "category_id": int(category_id),
        "iscrowd": int(bool(ignore)),
        "ignore": int(bool(ignore)),
        "area": w * h,
    }


class BoxChecker:
    """Validates boxes of one annotation file and counts what it had to fix.

    Boxes that stick out of the image are clipped; boxes with non-positive size
    (before or after clipping) are dropped. Each kind is counted and reported once per
    file by :meth:`report`, as a warning naming the file. Non-finite coordinates are
    an error naming the entry.
    """

    def __init__(self, source: str):
        self.source = source
        self.counts = collections.Counter()
        self.examples: Dict[str, str] = {}

    def _note(self, kind: str, where: str) -> None:
        self.counts[kind] += 1
        self.examples.setdefault(kind, where)

    def check(self, bbox: Sequence[float], width: Optional[float], height: Optional[float],
              where: str) -> Optional[List[float]]:
        """Return the (clipped) XYWH box, or None when it must be dropped.

        Args:
            bbox: [x, y, w, h].
            width, height: image size, or None when unknown (no clipping).
            where: names the entry in messages, e.g. "line 7" or "annotation id 12".
        """
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            raise DataFormatError(f"{self.source}: {where}: bbox must be 4 numbers, got {bbox!r}") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise DataFormatError(f"{self.source}: {where}: bbox is not finite: {bbox!r}")
        if w <= 0 or h <= 0:
            self._note("non-positive size", where)
            return None
        if width is not None and height is not None:
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, float(width)), min(y + h, float(height))
            if (x0, y0, x1, y1) != (x, y, x + w, y + h):
                if x1 <= x0 or y1 <= y0:
                    self._note("outside the image", where)
                    return None
                self._note("clipped to the image", where)
                x, y, w, h = x0, y0, x1 - x0, y1 - y0
        return [x, y, w, h]

    def report(self) -> Dict[str, int]:
        for kind, n in sorted(self.counts.items()):
            logger.warning("%s: %d box(es) %s (%s) -- %s", self.source, n,
                           "clipped" if kind == "clipped to the image" else f"dropped: {kind}",
                           f"first: {self.examples[kind]}",
                           "kept" if kind == "clipped to the image" else "not used")
        return dict(self.counts)


def warn_count(source: str, n: int, what: str) -> None:
    if n:
        logger.warning("%s: %d %s", source, n, what)


def check_category(cid, mapping: Dict, source: str, where: str):
    """Look up a dataset category id; unknown ids are an error naming the entry."""
    try:
        return mapping[cid]
    except (KeyError, TypeError):
        raise DataFormatError(
            f"{source}: {where}: unknown category id {cid!r} (known: {sorted(mapping)})") from None


def iter_nonempty_lines(path: str) -> Iterable:
    """(line number, stripped text) of the non-blank lines of a text file."""
    try:
        with open(path) as f:
            for i, line in enumerate(f, start=1):
                s = line.strip()
                if s:
                    yield i, s
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a text file ({e})") from None
