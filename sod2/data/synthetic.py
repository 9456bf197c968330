"""
The embedded default dataset: a seeded generator of tiny-object images.

``sod2_synthetic_train`` / ``sod2_synthetic_val`` are written on first use under
``$SOD2_DATASETS/sod2_synthetic`` (PNG images + sod2-dialect JSON), into a temporary
folder renamed into place when complete, under a file lock, so concurrent processes
and crashes never leave a half-written dataset.

Content, chosen to exercise what small-object detectors must handle:

* 3 classes with distinct shape and colour: ``disc`` (filled, warm), ``cross`` (plus
  sign, green), ``ring`` (hollow square, blue); colours jitter within each class;
* sizes (square root of box area): about 25% under 8 px, 35% from 8 to 16 px, the rest
  16 to 40 px;
* cluttered backgrounds: low-frequency texture, sensor noise, grey lines and blobs and
  elongated coloured blobs as distractors; objects blended with the background at
  45-100% opacity (low contrast);
* dense clusters next to isolated objects;
* ignore regions: patches crowded with overlapping object-like blobs, annotated as
  class-agnostic ignore regions (category -1, ``ignore: 1``).

Everything is drawn at 4x resolution and area-downsampled, so boxes are exact to a
fraction of a pixel even for 4 px objects.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Tuple

import cv2
import numpy as np

from .io import atomic_path, remove_stale_temporaries

logger = logging.getLogger(__name__)

__all__ = ["SyntheticConfig", "SYNTHETIC_CLASSES", "generate_synthetic", "ensure_synthetic",
           "render_image", "background", "draw_object", "class_color", "sample_size", "overlaps",
           "file_lock", "SUPERSAMPLING"]

SYNTHETIC_CLASSES = ("disc", "cross", "ring")
GENERATOR_VERSION = 2
SUPERSAMPLING = 4  # drawing resolution / output resolution
_SS = SUPERSAMPLING


@dataclass(frozen=True)
class SyntheticConfig:
    """Generator parameters; the dataset is regenerated when they change."""

    num_train: int = 480
    num_val: int = 120
    image_size: int = 256
    seed: int = 2024
    isolated: Tuple[int, int] = (6, 16)  # objects outside clusters, per image
    clusters: Tuple[int, int] = (1, 3)  # dense clusters per image
    cluster_size: Tuple[int, int] = (4, 10)  # objects per cluster
    ignore_region_prob: float = 0.35
    size_mix: Tuple[float, float, float] = (0.25, 0.35, 0.40)  # <8, 8-16, 16-40 px


def sample_size(rng: np.random.Generator, mix) -> float:
    """An object side in px from the size mix (fractions under 8, 8-16, 16-40 px)."""
    u = rng.random()
    if u < mix[0]:
        return rng.uniform(4.0, 8.0)
    if u < mix[0] + mix[1]:
        return rng.uniform(8.0, 16.0)
    return rng.uniform(16.0, 40.0)


def class_color(rng: np.random.Generator, cls: int) -> Tuple[int, int, int]:
    """RGB colour of a class, jittered (classes stay far apart in hue)."""
    if cls == 0:  # warm: red-orange
        c = (rng.uniform(200, 255), rng.uniform(40, 120), rng.uniform(20, 60))
    elif cls == 1:  # green
        c = (rng.uniform(30, 90), rng.uniform(190, 255), rng.uniform(40, 100))
    else:  # blue
        c = (rng.uniform(30, 80), rng.uniform(90, 160), rng.uniform(210, 255))
    return tuple(int(v) for v in c)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cluttered background at 4x: smooth texture + grey distractors. (S, S, 3) float32."""
    S = size * _SS
    low = rng.normal(0, 1, (size // 16 + 2, size // 16 + 2, 3)).astype(np.float32)
    low = cv2.resize(low, (S, S), interpolation=cv2.INTER_CUBIC)
    mid = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), 2)
    mid = cv2.resize(mid, (S, S), interpolation=cv2.INTER_LINEAR)[:, :, None]
    base = rng.uniform(70, 130)
    tint = rng.uniform(-12, 12, 3)
    img = base + tint + 14 * low + 18 * mid
    # distractors: unsaturated lines and blobs of any size
    for _ in range(rng.integers(3, 10)):
        g = float(rng.uniform(40, 200))
        p1 = tuple(int(v) for v in rng.integers(0, S, 2))
        p2 = tuple(int(v) for v in rng.integers(0, S, 2))
        cv2.line(img, p1, p2, (g, g, g), int(rng.integers(1, 3) * _SS), cv2.LINE_AA)
    for _ in range(rng.integers(4, 14)):
        g = float(rng.uniform(40, 200))
        c = tuple(int(v) for v in rng.integers(0, S, 2))
        axes = tuple(int(v) for v in rng.uniform(2, 14, 2) * _SS)
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, (g, g, g), -1, cv2.LINE_AA)
    # hard negatives: elongated blobs in any colour (objects are never elongated)
    for _ in range(rng.integers(0, 6)):
        col = tuple(float(v) for v in rng.uniform(30, 255, 3))
        c = tuple(int(v) for v in rng.integers(0, S, 2))
        a = rng.uniform(3, 12)
        axes = (int(a * _SS), int(a * rng.uniform(0.15, 0.35) * _SS))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, col, -1, cv2.LINE_AA)
    return img


def draw_object(img: np.ndarray, cls: int, cx: float, cy: float, s: float,
                color) -> List[float]:
    """Draw one object of side ~s px centred at (cx, cy) (output-pixel units) on the 4x
    canvas; return its tight XYWH box in output pixels."""
    k = _SS
    X, Y, R = cx * k, cy * k, s * k / 2.0
    col = tuple(float(c) for c in color)
    shift = 4  # sub-pixel precision of cv2 drawing: coordinates in 1/16 px of the 4x canvas

    def fx(v):
        return int(round(v * (1 << shift)))

    if cls == 0:
        r = R * 1.0
        cv2.circle(img, (fx(X), fx(Y)), fx(r), col, -1, cv2.LINE_AA, shift)
        half = r
        return [cx - half / k, cy - half / k, 2 * half / k, 2 * half / k]
    if cls == 1:
        t = max(R * 0.34, 0.75 * k)  # arm half-thickness, at least 0.75 output px
        pts = [(X - R, Y - t, X + R, Y + t), (X - t, Y - R, X + t, Y + R)]
        for x0, y0, x1, y1 in pts:
            cv2.rectangle(img, (fx(x0), fx(y0)), (fx(x1), fx(y1)), col, -1, cv2.LINE_AA, shift)
        return [cx - R / k, cy - R / k, 2 * R / k, 2 * R / k]
    t = max(R * 0.3, 0.75 * k)  # ring wall thickness
    walls = [(X - R, Y - R, X + R, Y - R + t), (X - R, Y + R - t, X + R, Y + R),
             (X - R, Y - R, X - R + t, Y + R), (X + R - t, Y - R, X + R, Y + R)]
    for x0, y0, x1, y1 in walls:
        cv2.rectangle(img, (fx(x0), fx(y0)), (fx(x1), fx(y1)), col, -1, cv2.LINE_AA, shift)
    return [cx - R / k, cy - R / k, 2 * R / k, 2 * R / k]


def overlaps(box, boxes, margin: float) -> bool:
    """True when XYWH ``box`` comes closer than ``margin`` px to one of ``boxes``."""
    x, y, w, h = box
    for bx, by, bw, bh in boxes:
        if x < bx + bw + margin and bx < x + w + margin and y < by + bh + margin and by < y + h + margin:
            return True
    return False


def render_image(rng: np.random.Generator, cfg: SyntheticConfig) -> Tuple[np.ndarray, List[Dict], List[List[float]]]:
    """Render one image.

    Returns:
        image: (H, W, 3) uint8 RGB;
        objects: list of {"bbox": [x, y, w, h], "category_id": int};
        regions: list of [x, y, w, h] ignore regions.
    """
    size = cfg.image_size
    img = background(rng, size)
    regions: List[List[float]] = []
    boxes: List[List[float]] = []
    objects: List[Dict] = []

    if rng.random() < cfg.ignore_region_prob:
        w, h = rng.uniform(28, 64, 2)
        x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
        regions.append([float(x), float(y), float(w), float(h)])
        # a crowd: overlapping object-like blobs of every class, too dense to box
        for _ in range(int(w * h / 30)):
            cls = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
            s = rng.uniform(3, 7)
            cx, cy = rng.uniform(x + s / 2, x + w - s / 2), rng.uniform(y + s / 2, y + h - s / 2)
            draw_object(img, cls, cx, cy, s, class_color(rng, cls))

    def place(cx, cy, s, cls) -> bool:
        half = s / 2
        box = [cx - half, cy - half, s, s]
        if box[0] < 1 or box[1] < 1 or box[0] + s > size - 1 or box[1] + s > size - 1:
            return False
        if overlaps(box, boxes, margin=1.0) or overlaps(box, regions, margin=2.0):
            return False
        # low-contrast objects: blend the class colour with the local background
        alpha = rng.uniform(0.45, 1.0)
        bg = img[min(int(cy * _SS), size * _SS - 1), min(int(cx * _SS), size * _SS - 1)]
        color = tuple(float(v) for v in (1 - alpha) * bg + alpha * np.array(class_color(rng, cls)))
        out = draw_object(img, cls, cx, cy, s, color)
        boxes.append(out)
        objects.append({"bbox": out, "category_id": cls})
        return True

    for _ in range(int(rng.integers(cfg.clusters[0], cfg.clusters[1] + 1))):
        cx0, cy0 = rng.uniform(24, size - 24, 2)
        n = int(rng.integers(cfg.cluster_size[0], cfg.cluster_size[1] + 1))
        cls_main = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
        for _ in range(n * 6):
            if n == 0:
                break
            s = rng.uniform(4.0, 12.0)  # clusters of tiny objects, as crowds seen from a drone
            cx, cy = cx0 + rng.normal(0, 10), cy0 + rng.normal(0, 10)
            cls = cls_main if rng.random() < 0.7 else int(rng.integers(0, len(SYNTHETIC_CLASSES)))
            if place(cx, cy, s, cls):
                n -= 1
    for _ in range(int(rng.integers(cfg.isolated[0], cfg.isolated[1] + 1))):
        for _ in range(20):
            s = sample_size(rng, cfg.size_mix)
            cx, cy = rng.uniform(s / 2 + 1, size - s / 2 - 1, 2)
            if place(cx, cy, s, int(rng.integers(0, len(SYNTHETIC_CLASSES)))):
                break

    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, 8, img.shape).astype(np.float32)  # sensor noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects, regions


def _split_json(records: List[Dict]) -> Dict:
    images, anns = [], []
    for i, rec in enumerate(records):
        images.append({"id": i + 1, "file_name": rec["file_name"], "width": rec["size"],
                       "height": rec["size"], "ignore_regions": rec["regions"]})
        for o in rec["objects"]:
            x, y, w, h = o["bbox"]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": o["category_id"] + 1,
                         "bbox": [round(v, 4) for v in (x, y, w, h)], "area": round(w * h, 4),
                         "iscrowd": 0})
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(SYNTHETIC_CLASSES)]
    return {"images": images, "annotations": anns, "categories": cats}


def generate_synthetic(dest: str, cfg: SyntheticConfig = SyntheticConfig()) -> None:
    """Write the dataset to ``dest`` (atomically replaced).

    Layout: ``train/*.png``, ``val/*.png``, ``annotations/{train,val}.json`` (sod2
    dialect), ``meta.json`` (generator version and parameters).
    """
    with atomic_path(dest, is_dir=True) as tmp:
        for split, n, seed_offset in (("train", cfg.num_train, 0), ("val", cfg.num_val, 1)):
            os.makedirs(os.path.join(tmp, split))
            rng = np.random.default_rng([cfg.seed, seed_offset])
            records = []
            for i in range(n):
                img, objects, regions = render_image(rng, cfg)
                name = f"{split}/{i:05d}.png"
                if not cv2.imwrite(os.path.join(tmp, name), img[:, :, ::-1]):
                    raise OSError(f"cannot write {os.path.join(tmp, name)}")
                records.append({"file_name": name, "size": cfg.image_size, "objects": objects,
                                "regions": regions})
            os.makedirs(os.path.join(tmp, "annotations"), exist_ok=True)
            with open(os.path.join(tmp, "annotations", f"{split}.json"), "w") as f:
                json.dump(_split_json(records), f)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump({"version": GENERATOR_VERSION, "config": asdict(cfg)}, f)


def _is_current(dest: str, cfg: SyntheticConfig) -> bool:
    try:
        with open(os.path.join(dest, "meta.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return False
    return meta.get("version") == GENERATOR_VERSION and meta.get("config") == json.loads(
        json.dumps(asdict(cfg)))


@contextlib.contextmanager
def file_lock(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_synthetic(dest: str, cfg: SyntheticConfig = SyntheticConfig()) -> str:
    """Generate the dataset at ``dest`` unless an up-to-date copy is there; return ``dest``.

    Temporary folders that a killed generation left next to ``dest`` are removed."""
    remove_stale_temporaries(dest)
    if _is_current(dest, cfg):
        return dest
    with file_lock(dest.rstrip("/") + ".lock"):
        if not _is_current(dest, cfg):  # another process may have finished meanwhile
            logger.info("Generating the sod2 synthetic dataset in %s ...", dest)
            generate_synthetic(dest, cfg)
    return dest


def synthetic_root() -> str:
    from .datasets.common import dataset_root

    return os.path.join(dataset_root(), "sod2_synthetic")


def load_synthetic(split: str, cfg: SyntheticConfig = SyntheticConfig()) -> List[Dict]:
    """Dataset dicts of a split, generating the dataset first if needed.

    Every image is checked (header, end marker, size: see
    :func:`sod2.data.datasets.common.verify_records`), so a damaged copy fails here,
    naming the file, rather than during training or evaluation."""
    from .datasets.coco_style import load_coco_style_json
    from .datasets.common import verify_records
    from .io import DataFormatError

    root = ensure_synthetic(synthetic_root(), cfg)
    json_file = os.path.join(root, "annotations", f"{split}.json")
    dicts = load_coco_style_json(json_file, root, SYNTHETIC_CLASSES)
    try:
        return verify_records(dicts, json_file)
    except DataFormatError as e:
        raise DataFormatError(f"{e}; the generated dataset is damaged: delete {root} and it "
                              f"is generated again on next use") from None


def register_synthetic() -> None:
    from .datasets.common import register_dataset

    for split in ("train", "val"):
        register_dataset(
            f"sod2_synthetic_{split}", lambda split=split: load_synthetic(split),
            thing_classes=list(SYNTHETIC_CLASSES), evaluator_type="sod2", eval_protocol="aitod",
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SYNTHETIC_CLASSES))},
            dataset_root_hint="$SOD2_DATASETS/sod2_synthetic (generated on first use)")
