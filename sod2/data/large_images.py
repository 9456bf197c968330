"""
Large-image evaluation sets for sliced inference: images of several thousand pixels where
most of the area holds no object, made reproducibly, that no slicing method was tuned on.

Two sets, each written on first use under ``$SOD2_DATASETS`` (PNG images + sod2-dialect
JSON, :mod:`sod2.data.datasets.export`) into a temporary folder renamed into place when
complete, under a file lock, and written again when its parameters (or its source) change,
as the embedded synthetic dataset is (:func:`sod2.data.synthetic.ensure_synthetic`);
``tools/make_large_image_set.py`` writes either to any folder.

``sod2_large_synthetic_val`` (:class:`LargeSyntheticConfig`, ``$SOD2_DATASETS/sod2_large_synthetic``)
    12 images of 4000 x 3000 px drawn with the embedded synthetic dataset's own functions
    (:mod:`sod2.data.synthetic`: background clutter, the 3 classes and their look, the size
    mix of isolated objects, 4-12 px objects in clusters, low-contrast blending, crowds
    marked as ignore regions, sensor noise): 2-4 tight clusters of 8-24 tiny objects
    (spread 10 px) plus 3-8 isolated objects per image, so that most of the area is empty.
    Same classes, category ids and evaluation protocol (``aitod`` buckets) as
    ``sod2_synthetic_val``: models trained on the embedded data apply unchanged.
    Measured on the default set (:func:`empty_slice_fraction`: sod2's and SAHI's slice grid,
    overlap 0.2): 540 objects (56% under 8 px, 39% 8-16 px, 4% 16-40 px) and 10 ignore
    regions; 422 of the 576 slices of 640 px (73%) and 218 of the 360 slices of 800 px
    (61%) hold no object. One image takes about 10 s of CPU time (measured 9.8 s; the
    whole set took 652 s of wall time on a 2-core machine shared with three other jobs;
    peak resident memory 1.2 GB in a process that has imported sod2, torch included); the
    set is 303 MB of PNG (sensor noise does not compress).

    The embedded generator draws a whole image at 4x and area-downsamples it; at 4000 x
    3000 that canvas would take 2.3 GB. Here the background is made of 512 px blocks, each
    drawn at 4x by :func:`sod2.data.synthetic.background` and area-downsampled, blended
    over 64 px overlaps (linear weights, so no seam is visible: brightness and texture
    vary smoothly from block to block, but a downscaled view shows the patchwork of
    blocks of different brightness; objects are placed independently of it). Each object
    is drawn at 4x on a local patch (the 1x pixels around it, each repeated 4 x 4 times)
    and the patch area-downsampled back: pixels the object does not touch come back
    unchanged, and the box is the exact box of the drawn shape, as in the embedded data
    (tested against drawing on the whole 4x canvas). The clusters make the set tinier than
    the embedded data: its isolated objects alone follow the 25/35/40% size mix.

``sod2_hituav_mosaic_val`` (:class:`HituavMosaicConfig`, ``$SOD2_DATASETS/sod2_hituav_mosaic``)
    8 mosaics of 4 x 4 real HIT-UAV thermal frames (640 x 512 each, so 2560 x 2048 px),
    from the ``val`` split under ``$SOD2_DATASETS/hit-uav`` when it is there, else from the
    repository's 17-frame sample (``tests/fixtures/hituav-subset/hit-uav``, CC BY 4.0, Suo
    et al., Scientific Data 10, 227 (2023)). 10 tiles per mosaic are frames with objects,
    copied pixel for pixel, with every annotation kept (box shifted by the tile's offset;
    classes, ignored boxes and DontCare ignore regions as they are). 6 tiles, at random
    places, are empty background: a whole frame without any annotation, or the largest
    crop of a frame with objects that no annotation touches (2 px apart), of the tile's
    aspect ratio and at least half its side, scaled to the tile (bilinear). A mosaic
    shows a frame at most once (whole or cropped) while the source has enough frames.
    "Empty" means no annotation: HIT-UAV's frames hold a few unannotated warm spots (the
    sample's frame without annotations, ``1_130_40_0_09996.jpg``, has three person-like
    ones), which count as false positives for every method alike. HIT-UAV's classes and
    protocol (``aitod`` buckets, as ``hituav_val``). Each image entry of the JSON lists
    its tiles (``tiles``: source frame, crop, kind), for checks and drawings. Measured on
    the default set made from the repository's sample: 855 objects, 28 ignore regions; 22
    of the 160 slices of 640 px (14%) and 4 of the 96 slices of 800 px (4%) hold no object
    (HIT-UAV's frames are crowded, and a slice spans up to four tiles); 19 MB, 19 s.

``sod2_hituav_mosaic_val_part2`` (``$SOD2_DATASETS/sod2_hituav_mosaic_part2``)
    The same from the frames of the full val split that ``hituav_val_part1`` does not hold
    (the last 90 in file-name order, as ``hituav_val_part2``), for models trained on
    ``hituav_val_part1``; it needs the full split under ``$SOD2_DATASETS/hit-uav``.

Both sets are seeded: the same parameters give the same files, byte for byte, on a
machine (JPEG decoding of the HIT-UAV frames is the one library-dependent step).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..errors import UserError
from .datasets.common import (IGNORE_REGION, dataset_root, is_ignored, make_annotation,
                              register_dataset, verify_records)
from .datasets.coco_style import load_coco_style_json
from .datasets.export import to_sod2_json
from .datasets.hituav import HITUAV_CLASSES, load_hituav
from .io import DataFormatError, atomic_path, read_image, remove_stale_temporaries
from .split import patch_origins
from .synthetic import (SUPERSAMPLING, SYNTHETIC_CLASSES, SyntheticConfig, background, class_color,
                        draw_object, file_lock, overlaps, sample_size)

logger = logging.getLogger(__name__)

__all__ = ["LargeSyntheticConfig", "HituavMosaicConfig", "render_large_image", "generate_large_synthetic",
           "generate_hituav_mosaics", "hituav_mosaic_source", "ensure_generated", "empty_slice_fraction",
           "load_large_synthetic", "load_hituav_mosaics", "register_large_images", "SAMPLE_HITUAV",
           "DEFAULT_LARGE_SYNTHETIC", "DEFAULT_HITUAV_MOSAIC"]

LARGE_SYNTHETIC_VERSION = 1
HITUAV_MOSAIC_VERSION = 1
# the repository's 17 HIT-UAV val frames (tests/fixtures/hituav-subset/hit-uav/README.md)
SAMPLE_HITUAV = str(Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "hituav-subset" / "hit-uav")
_MIN_SIDE = 128  # clusters are centred 64 px or more from the border
_CROP_MARGIN = 2  # px between an empty tile's crop and any annotation of its frame


def _check_pair(value, what: str, minimum: int = 1) -> Tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be two integers, got {value!r}") from None
    if min(a, b) < minimum:
        raise UserError(f"{what} must be at least {minimum}, got {value!r}")
    return a, b


@dataclass(frozen=True)
class LargeSyntheticConfig:
    """Parameters of the large synthetic set; the set is generated again when they change.

    Ranges are inclusive (low, high) counts per image."""

    num_images: int = 12
    width: int = 4000
    height: int = 3000
    seed: int = 2026
    clusters: Tuple[int, int] = (2, 4)  # tight clusters per image
    cluster_size: Tuple[int, int] = (8, 24)  # objects per cluster (4-12 px each)
    cluster_spread: float = 10.0  # px, standard deviation of positions around a cluster's centre
    isolated: Tuple[int, int] = (3, 8)  # objects outside clusters, sizes from size_mix
    crowds: Tuple[int, int] = (0, 2)  # crowds of object-like blobs, annotated as ignore regions
    size_mix: Tuple[float, float, float] = SyntheticConfig().size_mix  # <8, 8-16, 16-40 px
    background_block: int = 512  # px, side of the blocks the background is drawn in

    def __post_init__(self):
        if int(self.num_images) < 1:
            raise UserError(f"number of images must be at least 1, got {self.num_images}")
        _check_pair((self.width, self.height), "image size (width, height)", _MIN_SIDE)
        for name in ("clusters", "cluster_size", "isolated", "crowds"):
            lo, hi = _check_pair(getattr(self, name), name, 0)
            if lo > hi:
                raise UserError(f"{name} must be a (low, high) range, got {getattr(self, name)!r}")
        if not (math.isfinite(self.cluster_spread) and self.cluster_spread > 0):
            raise UserError(f"cluster_spread must be a positive number, got {self.cluster_spread!r}")
        if int(self.background_block) < 64:
            raise UserError(f"background_block must be at least 64 px, got {self.background_block}")


def _ramp(n: int, overlap: int) -> np.ndarray:
    """(n,) blending weights of a block: rising over ``overlap`` px at both ends, never 0."""
    i = np.arange(n, dtype=np.float32) + 0.5
    return np.minimum(1.0, np.minimum(i, n - i) / float(overlap)).astype(np.float32)


def _large_background(rng: np.random.Generator, height: int, width: int, block: int) -> np.ndarray:
    """(H, W, 3) float32 clutter: blocks of :func:`sod2.data.synthetic.background` (drawn at
    4x, area-downsampled) blended linearly over overlaps of ``block // 8`` px."""
    overlap = block // 8
    acc = np.zeros((height, width, 3), np.float32)
    weight = np.zeros((height, width, 1), np.float32)
    w1 = _ramp(block, overlap)
    w2 = (w1[:, None] * w1[None, :])[:, :, None]
    for y in patch_origins(height, block, block - overlap):
        for x in patch_origins(width, block, block - overlap):
            tile = cv2.resize(background(rng, block), (block, block), interpolation=cv2.INTER_AREA)
            h, w = min(block, height - y), min(block, width - x)
            acc[y:y + h, x:x + w] += tile[:h, :w] * w2[:h, :w]
            weight[y:y + h, x:x + w] += w2[:h, :w]
    acc /= weight
    return acc


def _draw_local(img: np.ndarray, shapes: Sequence[Tuple[int, float, float, float, tuple]]) -> List[List[float]]:
    """Draw ``shapes`` ((class, cx, cy, side, colour), image pixels) on ``img`` ((H, W, 3)
    float32, in place) as the embedded generator draws them, at 4x, on the local patch that
    holds them: the patch's pixels repeated 4 x 4 times, the shapes drawn, the patch
    area-downsampled back. Returns each shape's XYWH box in image pixels."""
    k = SUPERSAMPLING
    H, W = img.shape[:2]
    x0 = max(0, int(math.floor(min(cx - s / 2 for _, cx, _, s, _ in shapes))) - 2)
    y0 = max(0, int(math.floor(min(cy - s / 2 for _, _, cy, s, _ in shapes))) - 2)
    x1 = min(W, int(math.ceil(max(cx + s / 2 for _, cx, _, s, _ in shapes))) + 2)
    y1 = min(H, int(math.ceil(max(cy + s / 2 for _, _, cy, s, _ in shapes))) + 2)
    patch = np.repeat(np.repeat(img[y0:y1, x0:x1], k, axis=0), k, axis=1)
    boxes = []
    for cls, cx, cy, s, color in shapes:
        bx, by, bw, bh = draw_object(patch, cls, cx - x0, cy - y0, s, color)
        boxes.append([bx + x0, by + y0, bw, bh])
    img[y0:y1, x0:x1] = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    return boxes


def render_large_image(rng: np.random.Generator, cfg: LargeSyntheticConfig
                       ) -> Tuple[np.ndarray, List[Dict], List[List[float]]]:
    """Render one large image.

    Returns:
        image: (H, W, 3) uint8 RGB, H x W = ``cfg.height`` x ``cfg.width``;
        objects: list of {"bbox": [x, y, w, h], "category_id": int (0-based)};
        regions: list of [x, y, w, h] ignore regions (crowds).
    """
    H, W = cfg.height, cfg.width
    img = _large_background(rng, H, W, cfg.background_block)
    regions: List[List[float]] = []
    boxes: List[List[float]] = []
    objects: List[Dict] = []
    ncls = len(SYNTHETIC_CLASSES)

    for _ in range(int(rng.integers(cfg.crowds[0], cfg.crowds[1] + 1))):
        w, h = rng.uniform(28, 64, 2)
        x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
        if overlaps([x, y, w, h], regions, margin=2.0):
            continue
        regions.append([float(x), float(y), float(w), float(h)])
        blobs = []
        for _ in range(int(w * h / 30)):  # a crowd: overlapping object-like blobs, too dense to box
            cls = int(rng.integers(0, ncls))
            s = rng.uniform(3, 7)
            cx, cy = rng.uniform(x + s / 2, x + w - s / 2), rng.uniform(y + s / 2, y + h - s / 2)
            blobs.append((cls, cx, cy, s, class_color(rng, cls)))
        _draw_local(img, blobs)

    def place(cx: float, cy: float, s: float, cls: int) -> bool:
        box = [cx - s / 2, cy - s / 2, s, s]
        if box[0] < 1 or box[1] < 1 or box[0] + s > W - 1 or box[1] + s > H - 1:
            return False
        if overlaps(box, boxes, margin=1.0) or overlaps(box, regions, margin=2.0):
            return False
        alpha = rng.uniform(0.45, 1.0)  # low contrast: the class colour blended with the background
        bg = img[min(int(cy), H - 1), min(int(cx), W - 1)]
        color = tuple(float(v) for v in (1 - alpha) * bg + alpha * np.array(class_color(rng, cls)))
        (out,) = _draw_local(img, [(cls, cx, cy, s, color)])
        boxes.append(out)
        objects.append({"bbox": out, "category_id": cls})
        return True

    for _ in range(int(rng.integers(cfg.clusters[0], cfg.clusters[1] + 1))):
        cx0, cy0 = rng.uniform(64, W - 64), rng.uniform(64, H - 64)
        n = int(rng.integers(cfg.cluster_size[0], cfg.cluster_size[1] + 1))
        cls_main = int(rng.integers(0, ncls))
        for _ in range(n * 6):
            if n == 0:
                break
            s = rng.uniform(4.0, 12.0)
            cx, cy = cx0 + rng.normal(0, cfg.cluster_spread), cy0 + rng.normal(0, cfg.cluster_spread)
            cls = cls_main if rng.random() < 0.7 else int(rng.integers(0, ncls))
            if place(cx, cy, s, cls):
                n -= 1
    for _ in range(int(rng.integers(cfg.isolated[0], cfg.isolated[1] + 1))):
        for _ in range(20):
            s = sample_size(rng, cfg.size_mix)
            cx, cy = rng.uniform(s / 2 + 1, W - s / 2 - 1), rng.uniform(s / 2 + 1, H - s / 2 - 1)
            if place(cx, cy, s, int(rng.integers(0, ncls))):
                break

    img += rng.standard_normal(img.shape, dtype=np.float32) * 8  # sensor noise
    np.rint(img, out=img)
    return np.clip(img, 0, 255).astype(np.uint8), objects, regions


def _write_png(path: str, image_bgr: np.ndarray) -> None:
    """Write (H, W, 3) uint8 BGR as PNG; as one grey channel when the three are equal."""
    if image_bgr.ndim == 3 and (image_bgr[:, :, 0] == image_bgr[:, :, 1]).all() and \
            (image_bgr[:, :, 0] == image_bgr[:, :, 2]).all():
        image_bgr = image_bgr[:, :, 0]
    if not cv2.imwrite(path, image_bgr):
        raise OSError(f"cannot write {path}")


def _write_split(root: str, records: List[Dict], classes: Sequence[str],
                 extra_image_keys: Optional[List[Dict]] = None) -> None:
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    coco = to_sod2_json(records, classes, root)
    for entry, extra in zip(coco["images"], extra_image_keys or []):
        entry.update(extra)
    with open(os.path.join(root, "annotations", "val.json"), "w") as f:
        json.dump(coco, f)


def generate_large_synthetic(dest: str, cfg: LargeSyntheticConfig = LargeSyntheticConfig()) -> None:
    """Write the large synthetic set to ``dest`` (atomically replaced).

    Layout: ``val/NNNNN.png``, ``annotations/val.json`` (sod2 dialect, category ids 1..3
    as in ``sod2_synthetic``), ``meta.json``. Image ``i`` depends only on ``(seed, i)``."""
    with atomic_path(dest, is_dir=True) as tmp:
        os.makedirs(os.path.join(tmp, "val"))
        records = []
        for i in range(cfg.num_images):
            img, objects, regions = render_large_image(np.random.default_rng([cfg.seed, i]), cfg)
            path = os.path.join(tmp, "val", f"{i:05d}.png")
            _write_png(path, img[:, :, ::-1])
            anns = [make_annotation(r, IGNORE_REGION, ignore=True) for r in regions]
            anns += [make_annotation(o["bbox"], o["category_id"]) for o in objects]
            records.append({"file_name": path, "image_id": i + 1, "width": cfg.width,
                            "height": cfg.height, "annotations": anns})
        _write_split(tmp, records, SYNTHETIC_CLASSES)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(_synthetic_meta(cfg), f)


def _synthetic_meta(cfg: LargeSyntheticConfig) -> Dict:
    return json.loads(json.dumps({"version": LARGE_SYNTHETIC_VERSION, "config": asdict(cfg)}))


DEFAULT_LARGE_SYNTHETIC = LargeSyntheticConfig()  # what sod2_large_synthetic_val is made with

# ----------------------------------------------------------------------------------- mosaics


@dataclass(frozen=True)
class HituavMosaicConfig:
    """Parameters of the HIT-UAV mosaics; the set is generated again when they (or the
    source's annotations) change."""

    num_images: int = 8
    grid: Tuple[int, int] = (4, 4)  # rows, columns of frames
    empty_tiles: int = 6  # tiles of object-free background per mosaic
    seed: int = 2026
    min_crop: float = 0.5  # an empty tile's crop: at least this fraction of the tile's side
    # frames used: the source's frames in file-name order from this index on (200: the 90
    # frames of HIT-UAV's val split that hituav_val_part1 does not hold)
    skip_frames: int = 0

    def __post_init__(self):
        if int(self.num_images) < 1:
            raise UserError(f"number of images must be at least 1, got {self.num_images}")
        rows, cols = _check_pair(self.grid, "grid (rows, columns)")
        if not 0 <= int(self.empty_tiles) < rows * cols:
            raise UserError(f"empty tiles must be in [0, {rows * cols}) for a {rows}x{cols} grid, "
                            f"got {self.empty_tiles}")
        if not (math.isfinite(self.min_crop) and 0 < self.min_crop <= 1):
            raise UserError(f"min_crop must be in (0, 1], got {self.min_crop!r}")
        if int(self.skip_frames) < 0:
            raise UserError(f"skip_frames must be at least 0, got {self.skip_frames}")


def hituav_mosaic_source(root: Optional[str] = None) -> Tuple[str, str]:
    """(annotation file, image folder) of the frames the mosaics are cut from: the ``val``
    split of the HIT-UAV folder ``root`` when given, else of ``$SOD2_DATASETS/hit-uav``
    when it is there, else the repository's sample (:data:`SAMPLE_HITUAV`).

    Raises:
        DataFormatError: ``root`` is given and has no ``annotations/val.json`` and ``val/``,
            or neither default is there.
    """
    candidates = [root] if root else [os.path.join(dataset_root(), "hit-uav"), SAMPLE_HITUAV]
    for r in candidates:
        ann, images = os.path.join(r, "annotations", "val.json"), os.path.join(r, "val")
        if os.path.isfile(ann) and os.path.isdir(images):
            return ann, images
    raise DataFormatError(f"no HIT-UAV val split (annotations/val.json and val/) under "
                          f"{' or '.join(os.path.abspath(c) for c in candidates)}")


def _has_object(rec: Dict) -> bool:
    return any(a["category_id"] >= 0 and not is_ignored(a) for a in rec["annotations"])


def _largest_free_crop(rec: Dict, min_crop: float) -> Optional[Tuple[int, int, np.ndarray]]:
    """The largest crop of ``rec``'s frame, of the frame's aspect ratio and at least
    ``min_crop`` of its side, that no annotation comes within 2 px of.

    Returns:
        (crop height, crop width, (P, 2) int64 top-left ``y, x`` of every such crop), or
        None when none is large enough. Sides are tried from the full frame down in
        sixteenths of it."""
    H, W = rec["height"], rec["width"]
    busy = np.zeros((H, W), np.int32)
    for a in rec["annotations"]:
        x, y, w, h = a["bbox"]
        busy[max(0, int(math.floor(y)) - _CROP_MARGIN):min(H, int(math.ceil(y + h)) + _CROP_MARGIN),
             max(0, int(math.floor(x)) - _CROP_MARGIN):min(W, int(math.ceil(x + w)) + _CROP_MARGIN)] = 1
    integral = np.zeros((H + 1, W + 1), np.int64)
    integral[1:, 1:] = busy.cumsum(0).cumsum(1)
    for k in range(16, 0, -1):
        if k / 16 < min_crop:
            break
        ch, cw = int(round(H * k / 16)), int(round(W * k / 16))
        sums = (integral[ch:, cw:] - integral[:-ch, cw:] - integral[ch:, :-cw] + integral[:-ch, :-cw])
        free = np.argwhere(sums == 0)
        if len(free):
            return ch, cw, free
    return None


def _source_fingerprint(json_file: str, records: List[Dict]) -> Dict:
    with open(json_file, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return {"annotations_sha256": digest, "frames": len(records)}


def generate_hituav_mosaics(dest: str, cfg: HituavMosaicConfig = HituavMosaicConfig(),
                            source: Optional[str] = None) -> None:
    """Write HIT-UAV mosaics to ``dest`` (atomically replaced).

    Args:
        source: HIT-UAV folder with ``annotations/val.json`` and ``val/``; None:
            :func:`hituav_mosaic_source`'s default.
    Layout: ``val/NNNNN.png``, ``annotations/val.json`` (sod2 dialect, category ids 1..4
    for HIT-UAV's classes, DontCare boxes as ``ignore_regions``; each image entry has
    ``tiles``: ``row``, ``col``, ``kind`` ("objects", "empty frame" or "empty crop"),
    ``source`` (the frame's file name in the source folder) and ``crop`` (``[x, y, w, h]``
    of the frame that fills the tile)), ``meta.json``. Mosaic ``i`` depends only on
    ``(seed, i)`` and the source.

    Raises:
        DataFormatError: the source is missing, has frames of different sizes, no frame
            with objects, or (with empty tiles asked for) no object-free background.
    """
    _write_mosaics(dest, cfg, *_source_frames(cfg, source))


def _source_frames(cfg: HituavMosaicConfig, source: Optional[str]) -> Tuple[List[Dict], str, str]:
    """(frames in file-name order from ``cfg.skip_frames`` on, annotation file, image folder)."""
    json_file, image_root = hituav_mosaic_source(source)
    frames = sorted(load_hituav(json_file, image_root), key=lambda d: d["file_name"])
    if cfg.skip_frames and len(frames) <= cfg.skip_frames:
        raise DataFormatError(f"{json_file}: {len(frames)} frames, none left after skipping "
                              f"{cfg.skip_frames} (HIT-UAV's full val split has 290)")
    return frames[cfg.skip_frames:], json_file, image_root


def _frame_pools(frames: List[Dict], cfg: HituavMosaicConfig, json_file: str):
    if not frames:
        raise DataFormatError(f"{json_file}: no frames")
    H, W = frames[0]["height"], frames[0]["width"]
    for d in frames:
        if (d["height"], d["width"]) != (H, W):
            raise DataFormatError(f"{d['file_name']}: frame is {d['width']}x{d['height']}, the first "
                                  f"frame {frames[0]['file_name']} is {W}x{H}: mosaic tiles need one size")
    with_objects = [d for d in frames if _has_object(d)]
    if not with_objects:
        raise DataFormatError(f"{json_file}: no frame holds an object")
    empty = []  # (frame, crop height, crop width, top-left positions)
    if cfg.empty_tiles:
        for d in frames:
            if not d["annotations"]:
                empty.append((d, H, W, np.zeros((1, 2), np.int64)))
            elif _has_object(d):
                crop = _largest_free_crop(d, cfg.min_crop)
                if crop is not None:
                    empty.append((d,) + crop)
        if not empty:
            raise DataFormatError(f"{json_file}: no frame without annotations and no object-free "
                                  f"crop of at least {cfg.min_crop:g} of a frame's side for the empty tiles")
    return (H, W), with_objects, empty


def _write_mosaics(dest: str, cfg: HituavMosaicConfig, frames: List[Dict], json_file: str,
                   image_root: str) -> None:
    (H, W), with_objects, empty = _frame_pools(frames, cfg, json_file)
    rows, cols = cfg.grid
    n_tiles = rows * cols
    n_obj = n_tiles - cfg.empty_tiles
    with atomic_path(dest, is_dir=True) as tmp:
        os.makedirs(os.path.join(tmp, "val"))
        records, tiles_of = [], []
        for i in range(cfg.num_images):
            rng = np.random.default_rng([cfg.seed, i])
            empty_at = set(rng.choice(n_tiles, cfg.empty_tiles, replace=False).tolist())
            picks = rng.choice(len(with_objects), n_obj, replace=len(with_objects) < n_obj).tolist()
            shown = {with_objects[p]["file_name"] for p in picks}
            # empty tiles from other frames than the object tiles, and each from its own frame,
            # while there are enough
            pool = [e for e in empty if e[0]["file_name"] not in shown] or empty
            fills = rng.choice(len(pool), cfg.empty_tiles, replace=len(pool) < cfg.empty_tiles).tolist()
            canvas = np.zeros((rows * H, cols * W, 3), np.uint8)
            anns, tiles = [], []
            for t in range(n_tiles):
                r, c = divmod(t, cols)
                ox, oy = c * W, r * H
                if t in empty_at:
                    frame, ch, cw, positions = pool[fills.pop(0)]
                    y, x = (int(v) for v in positions[int(rng.integers(len(positions)))])
                    pixels = read_image(frame["file_name"])[y:y + ch, x:x + cw]
                    if (ch, cw) != (H, W):
                        pixels = cv2.resize(pixels, (W, H), interpolation=cv2.INTER_LINEAR)
                    kind = "empty frame" if not frame["annotations"] else "empty crop"
                    crop = [x, y, cw, ch]
                else:
                    frame = with_objects[picks.pop(0)]
                    pixels = read_image(frame["file_name"])
                    kind, crop = "objects", [0, 0, W, H]
                    for a in frame["annotations"]:
                        bx, by, bw, bh = a["bbox"]
                        anns.append(make_annotation([bx + ox, by + oy, bw, bh], a["category_id"],
                                                    ignore=is_ignored(a)))
                canvas[oy:oy + H, ox:ox + W] = pixels
                tiles.append({"row": r, "col": c, "kind": kind, "crop": crop,
                              "source": os.path.relpath(frame["file_name"], image_root).replace(os.sep, "/")})
            path = os.path.join(tmp, "val", f"{i:05d}.png")
            _write_png(path, canvas)
            records.append({"file_name": path, "image_id": i + 1, "width": cols * W, "height": rows * H,
                            "annotations": anns})
            tiles_of.append({"tiles": tiles})
        _write_split(tmp, records, HITUAV_CLASSES, tiles_of)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(_mosaic_meta(cfg, _source_fingerprint(json_file, frames)), f)


def _mosaic_meta(cfg: HituavMosaicConfig, fingerprint: Dict) -> Dict:
    return json.loads(json.dumps({"version": HITUAV_MOSAIC_VERSION, "config": asdict(cfg),
                                  "source": fingerprint}))


DEFAULT_HITUAV_MOSAIC = HituavMosaicConfig()  # what sod2_hituav_mosaic_val is made with

# ------------------------------------------------------------------- first use, registration


def ensure_generated(dest: str, meta: Dict, write: Callable[[str], None]) -> str:
    """Run ``write(dest)`` unless ``dest/meta.json`` equals ``meta``; return ``dest``.

    Under a file lock next to ``dest``, so concurrent processes generate once; temporary
    folders that a killed generation left next to ``dest`` are removed first."""
    def current() -> bool:
        try:
            with open(os.path.join(dest, "meta.json")) as f:
                return json.load(f) == meta
        except (OSError, ValueError):
            return False

    remove_stale_temporaries(dest)
    if current():
        return dest
    with file_lock(dest.rstrip("/") + ".lock"):
        if not current():  # another process may have finished meanwhile
            logger.info("Generating %s ...", dest)
            write(dest)
    return dest


def _load(root: str, classes: Sequence[str]) -> List[Dict]:
    json_file = os.path.join(root, "annotations", "val.json")
    dicts = load_coco_style_json(json_file, root, classes)
    try:
        return verify_records(dicts, json_file)
    except DataFormatError as e:
        raise DataFormatError(f"{e}; the generated set is damaged: delete {root} and it is "
                              f"generated again on next use") from None


def load_large_synthetic(cfg: Optional[LargeSyntheticConfig] = None,
                         root: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of ``sod2_large_synthetic_val``, generating the set first if needed
    (default config :data:`DEFAULT_LARGE_SYNTHETIC`, default folder
    ``$SOD2_DATASETS/sod2_large_synthetic``); every image is checked
    (:func:`sod2.data.datasets.common.verify_records`)."""
    cfg = cfg or DEFAULT_LARGE_SYNTHETIC
    root = root or os.path.join(dataset_root(), "sod2_large_synthetic")
    ensure_generated(root, _synthetic_meta(cfg), lambda d: generate_large_synthetic(d, cfg))
    return _load(root, SYNTHETIC_CLASSES)


def load_hituav_mosaics(cfg: Optional[HituavMosaicConfig] = None, root: Optional[str] = None,
                        source: Optional[str] = None) -> List[Dict]:
    """Dataset dicts of ``sod2_hituav_mosaic_val``, generating the set first if needed
    (default config :data:`DEFAULT_HITUAV_MOSAIC`, default folder
    ``$SOD2_DATASETS/sod2_hituav_mosaic``, source :func:`hituav_mosaic_source`);
    regenerated when the config or the source's annotations change."""
    cfg = cfg or DEFAULT_HITUAV_MOSAIC
    root = root or os.path.join(dataset_root(), "sod2_hituav_mosaic")
    frames, json_file, image_root = _source_frames(cfg, source)
    meta = _mosaic_meta(cfg, _source_fingerprint(json_file, frames))
    ensure_generated(root, meta, lambda d: _write_mosaics(d, cfg, frames, json_file, image_root))
    return _load(root, HITUAV_CLASSES)


def empty_slice_fraction(dicts: Sequence[Dict], slice_size: int, overlap: float = 0.2) -> Tuple[int, int]:
    """(slices holding no object, slices) over ``dicts``, on sod2's (and SAHI's) slice grid:
    square slices of ``slice_size`` px, origins ``0, stride, 2 stride, ...`` with
    ``stride = slice_size - int(overlap * slice_size)``, the last one snapped to the edge
    (:func:`sod2.data.split.patch_origins`). A slice holds an object when a box that is not
    ignored overlaps it with positive area; ignore regions and ignored boxes do not count."""
    stride = slice_size - int(overlap * slice_size)
    empty = total = 0
    for d in dicts:
        boxes = np.array([a["bbox"] for a in d["annotations"] if not is_ignored(a)], np.float64).reshape(-1, 4)
        x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
        for sy in patch_origins(int(d["height"]), slice_size, stride):
            for sx in patch_origins(int(d["width"]), slice_size, stride):
                hit = (x0 < sx + slice_size) & (x1 > sx) & (y0 < sy + slice_size) & (y1 > sy)
                empty += not hit.any()
                total += 1
    return empty, total


def register_large_images() -> None:
    """Register ``sod2_large_synthetic_val``, ``sod2_hituav_mosaic_val`` and
    ``sod2_hituav_mosaic_val_part2`` (reads no file)."""
    register_dataset(
        "sod2_large_synthetic_val", lambda: load_large_synthetic(), thing_classes=list(SYNTHETIC_CLASSES),
        evaluator_type="sod2", eval_protocol="aitod",
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SYNTHETIC_CLASSES))},
        dataset_root_hint="$SOD2_DATASETS/sod2_large_synthetic (generated on first use)")
    register_dataset(
        "sod2_hituav_mosaic_val", lambda: load_hituav_mosaics(), thing_classes=list(HITUAV_CLASSES),
        evaluator_type="sod2", eval_protocol="aitod",
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(HITUAV_CLASSES))},
        dataset_root_hint="$SOD2_DATASETS/sod2_hituav_mosaic (generated on first use from "
                          "$SOD2_DATASETS/hit-uav/val or the repository's HIT-UAV sample)")
    # only frames that hituav_val_part1 (the first 200 of val) does not hold: for models trained on it
    register_dataset(
        "sod2_hituav_mosaic_val_part2",
        lambda: load_hituav_mosaics(replace(DEFAULT_HITUAV_MOSAIC, skip_frames=200),
                                    root=os.path.join(dataset_root(), "sod2_hituav_mosaic_part2")),
        thing_classes=list(HITUAV_CLASSES), evaluator_type="sod2", eval_protocol="aitod",
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(HITUAV_CLASSES))},
        dataset_root_hint="$SOD2_DATASETS/sod2_hituav_mosaic_part2 (generated on first use from "
                          "the last 90 frames of $SOD2_DATASETS/hit-uav/val)")
