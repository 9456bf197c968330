"""
YOLOX's strong augmentation as a dataset wrapper reusable by any sod2 model: Mosaic,
random affine, MixUp, HSV, horizontal flip and letterboxing (``MosaicDataset``).

**Design: the wrapper is the dataset.** :class:`MosaicDataset` is a ``torch`` map-style
dataset over a list of sod2 dataset dicts; item ``i`` is an already-mapped training dict
(the same format as :class:`sod2.data.SODDatasetMapper`'s output), built from image ``i`` and
images it draws itself (3 more for Mosaic, 1 for MixUp). In a LazyConfig it is the
``dataset`` of ``build_detection_train_loader`` and the mapper is ``None``::

    dataloader.train.dataset = L(MosaicDataset)(
        dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_train"), input_size=(640, 640))
    dataloader.train.mapper = None

**Output** (per item): ``image`` (3, H, W) uint8 tensor in ``image_format`` order, with
(H, W) = ``input_size``; ``instances`` (objects: ``gt_boxes`` (R, 4) XYXY, ``gt_classes`` (R,),
``gt_orig_areas`` (R,)); ``ignore_instances`` (ignored boxes and class-agnostic ignore
regions: ``gt_boxes`` (M, 4), ``gt_classes`` (M,), -1 for regions); ``height``/``width`` =
(H, W); ``mosaic`` (bool: Mosaic was applied); and image ``i``'s other keys (``file_name``,
``image_id``, ...).

**Pipeline** (numbers of the reference, all constructor arguments): with probability
``mosaic_prob`` while strong augmentation is on: Mosaic on a 2H x 2W canvas filled with
``fill``, centre ``U(0.5, 1.5) * (H, W)``, each image resized by ``min(H/h, W/w)``; labels
shifted and clipped to the canvas; random affine to (H, W) (rotation ``U(+-degrees)`` and
scale ``U(mosaic_scale)`` about the origin, shear ``tan(U(+-shear) deg)``, translation
``U(+-translate) * (W, H)``, border ``fill``; boxes: 4 corners -> hull -> clip); then, when
the mosaic has objects, MixUp with probability ``mixup_prob``: an image with at least one
object, letterboxed (top-left) to (H, W), scaled by ``U(mixup_scale)``, flipped with
probability 0.5, pasted top-left on a zero canvas, randomly cropped to (H, W), blended
``0.5 / 0.5``, labels concatenated. Otherwise (or when strong augmentation is off) image
``i`` alone. Then always: HSV with probability ``hsv_prob`` (integer offsets up to
``hsv_gains`` = (5, 30, 30), each channel on with probability 0.5), horizontal flip with
probability ``flip_prob``, letterbox to (H, W) (pad ``fill`` bottom/right), objects with
``min(w, h) <= min_box_size`` dropped, at most ``max_labels`` objects kept.

**Ignored boxes and regions** follow every geometric step with their image (same resize,
shift, affine hull, flip, crop, clip), stay in ``ignore_instances`` (MixUp concatenates both
images' sets) and are never turned into objects; only the empty ones are dropped.

**gt_orig_areas**: each object's box area after all transforms divided by the product of
the area scales of its own image's transforms (resizes: ``r**2``; affine: ``|det|`` of its
linear part; flips, shifts, crops: 1), so it is the object's area in its original image
for an unclipped box under scaling (an affine hull of a rotated box is larger).

**Switching strong augmentation off** (the no-aug tail, :class:`sod2.engine.hooks.NoAugTail`):
:meth:`MosaicDataset.set_strong_augmentation` writes a flag in shared memory created with
the dataset, which the data loader workers (separate processes, forked or spawned) inherit
and read for every item; HSV, flip and letterbox stay on, as in the reference.

Differences from the reference, on purpose: images are read at their size (no pre-resize to
``input_size``, which would resample twice); HSV and flip are applied also to images
without objects; when every object of a strongly augmented image is dropped as too small,
the image is kept with no objects (the reference falls back to the un-augmented mosaic
with its degenerate boxes).

Randomness comes from ``numpy.random`` (Detectron2 seeds it per data loader worker).
"""
from __future__ import annotations

import math
import multiprocessing as mp
from typing import Dict, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import cv2
import numpy as np
import torch
from detectron2.data.common import DatasetFromList
from detectron2.structures import Boxes, BoxMode, Instances

from .datasets.common import is_ignored
from .io import read_image
from .mapper import fill_ignore_regions

__all__ = ["MosaicDataset", "StrongAugmentationSwitch", "mosaic_placement", "affine_matrix",
           "random_affine_matrix", "affine_boxes", "augment_hsv", "random_hsv_gains", "letterbox"]


@runtime_checkable
class StrongAugmentationSwitch(Protocol):
    """A training dataset whose strong augmentation can be switched on and off, in its own
    process and in its data loader workers (:class:`MosaicDataset`): what the no-aug tail
    (:class:`sod2.engine.hooks.NoAugTail`) is handed."""

    def set_strong_augmentation(self, enabled: bool) -> None:
        ...


# ----------------------------------------------------------------------------- pieces

def mosaic_placement(k: int, xc: int, yc: int, w: int, h: int, H: int, W: int
                     ) -> Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]:
    """Where image ``k`` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right of the
    centre ``(xc, yc)``) of size (h, w) goes on a 2H x 2W canvas.

    Returns:
        ((x1, y1, x2, y2) on the canvas, (x1, y1, x2, y2) of the part of the image shown);
        the image's corner nearest the centre sits on the centre, and the image is cut only
        by the canvas border.
    """
    if k in (0, 2):  # left of the centre
        cx1, cx2 = max(xc - w, 0), xc
        sx1 = w - (cx2 - cx1)
    else:
        cx1, cx2 = xc, min(xc + w, 2 * W)
        sx1 = 0
    if k in (0, 1):  # above the centre
        cy1, cy2 = max(yc - h, 0), yc
        sy1 = h - (cy2 - cy1)
    else:
        cy1, cy2 = yc, min(yc + h, 2 * H)
        sy1 = 0
    return (cx1, cy1, cx2, cy2), (sx1, sy1, sx1 + cx2 - cx1, sy1 + cy2 - cy1)


def affine_matrix(angle: float, scale: float, shear_x: float, shear_y: float, tx: float, ty: float
                  ) -> np.ndarray:
    """The (2, 3) affine map of YOLOX's random affine (angles in degrees).

    Rotation by ``angle`` (counter-clockwise on screen) and ``scale`` about the origin
    ``R = scale * [[cos, sin], [-sin, cos]]``; shear rows ``M0 = R0 + tan(shear_y) R1``,
    ``M1 = R1 + tan(shear_x) R0``; translation ``(tx, ty)``.
    """
    a = math.radians(angle)
    c, s = scale * math.cos(a), scale * math.sin(a)
    r0, r1 = np.array([c, s]), np.array([-s, c])
    shx, shy = math.tan(math.radians(shear_x)), math.tan(math.radians(shear_y))
    M = np.zeros((2, 3), dtype=np.float64)
    M[0, :2] = r0 + shy * r1
    M[1, :2] = r1 + shx * r0
    M[:, 2] = (tx, ty)
    return M


def random_affine_matrix(out_size: Tuple[int, int], degrees: float, translate: float,
                         scale_range: Sequence[float], shear: float, rng=np.random) -> np.ndarray:
    """(2, 3) matrix with angle ``U(+-degrees)``, scale ``U(scale_range)``, shears
    ``U(+-shear)`` degrees and translation ``U(+-translate) * (W, H)``; ``out_size`` = (H, W)."""
    angle = rng.uniform(-degrees, degrees)
    scale = rng.uniform(scale_range[0], scale_range[1])
    if scale <= 0:
        raise ValueError(f"random affine: scale must be positive, got range {tuple(scale_range)}")
    shear_x = rng.uniform(-shear, shear)
    shear_y = rng.uniform(-shear, shear)
    tx = rng.uniform(-translate, translate) * out_size[1]
    ty = rng.uniform(-translate, translate) * out_size[0]
    return affine_matrix(angle, scale, shear_x, shear_y, tx, ty)


def affine_boxes(boxes: np.ndarray, M: np.ndarray, out_size: Tuple[int, int]) -> np.ndarray:
    """Boxes (N, 4) XYXY mapped by the (2, 3) ``M``: the 4 corners are mapped, their
    axis-aligned hull is taken and clipped to ``out_size`` = (H, W). Returns (N, 4)."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).copy()
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x1, x2], 1)
    ys = np.stack([y1, y2, y2, y1], 1)
    X = M[0, 0] * xs + M[0, 1] * ys + M[0, 2]
    Y = M[1, 0] * xs + M[1, 1] * ys + M[1, 2]
    out = np.stack([X.min(1), Y.min(1), X.max(1), Y.max(1)], 1)
    out[:, 0::2] = out[:, 0::2].clip(0, out_size[1])
    out[:, 1::2] = out[:, 1::2].clip(0, out_size[0])
    return out


def random_hsv_gains(gains: Sequence[float] = (5, 30, 30), rng=np.random) -> np.ndarray:
    """(3,) int offsets for H, S, V: ``U(-1, 1) * gain`` truncated towards 0, each channel
    kept with probability 0.5 (else 0)."""
    g = rng.uniform(-1, 1, 3) * np.asarray(gains, dtype=np.float64)
    g *= rng.randint(0, 2, 3)
    return g.astype(np.int16)


def augment_hsv(img: np.ndarray, offsets: Sequence[int], image_format: str = "BGR") -> np.ndarray:
    """Shift an 8-bit image in OpenCV's HSV space: ``H = (H + dh) mod 180``,
    ``S = clip(S + ds, 0, 255)``, ``V = clip(V + dv, 0, 255)``.

    Args:
        img: (h, w, 3) uint8 in ``image_format`` ("BGR" or "RGB") order.
        offsets: (dh, ds, dv) integers.
    Returns:
        (h, w, 3) uint8, a new array.
    """
    to_hsv, from_hsv = ((cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR) if image_format == "BGR"
                        else (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB))
    hsv = cv2.cvtColor(np.ascontiguousarray(img), to_hsv).astype(np.int16)
    dh, ds, dv = (int(v) for v in offsets)
    hsv[..., 0] = (hsv[..., 0] + dh) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + ds, 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + dv, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), from_hsv)


def letterbox(img: np.ndarray, size: Tuple[int, int], fill: int = 114) -> Tuple[np.ndarray, float]:
    """Resize (h, w, 3) ``img`` by ``r = min(H/h, W/w)`` to (int(h r), int(w r)) and pad it
    bottom/right with ``fill`` to ``size`` = (H, W). Returns ((H, W, 3) image, r)."""
    H, W = size
    h, w = img.shape[:2]
    r = min(H / h, W / w)
    nh, nw = int(h * r), int(w * r)
    out = np.full((H, W, img.shape[2]), fill, dtype=np.uint8)
    out[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nh, nw) != (h, w) else img
    return out, r


# ----------------------------------------------------------------------------- labels

class _Labels:
    """An image's labels: objects ``boxes`` (N, 4) XYXY float64, ``classes`` (N,),
    ``scales`` (N,) the area scale accumulated so far; ignored ``ign_boxes`` (M, 4),
    ``ign_classes`` (M,)."""

    def __init__(self, boxes, classes, ign_boxes, ign_classes, scales=None):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.classes = np.asarray(classes, dtype=np.int64).reshape(-1)
        self.ign_boxes = np.asarray(ign_boxes, dtype=np.float64).reshape(-1, 4)
        self.ign_classes = np.asarray(ign_classes, dtype=np.int64).reshape(-1)
        self.scales = np.ones(len(self.boxes)) if scales is None else np.asarray(scales, dtype=np.float64)

    def map(self, fn, area_scale: float = 1.0) -> "_Labels":
        """Apply ``fn`` ((K, 4) -> (K, 4)) to both box sets; multiply the area scale."""
        return _Labels(fn(self.boxes), self.classes, fn(self.ign_boxes), self.ign_classes,
                       self.scales * area_scale)

    @staticmethod
    def cat(parts: Sequence["_Labels"]) -> "_Labels":
        return _Labels(np.concatenate([p.boxes for p in parts]), np.concatenate([p.classes for p in parts]),
                       np.concatenate([p.ign_boxes for p in parts]),
                       np.concatenate([p.ign_classes for p in parts]),
                       np.concatenate([p.scales for p in parts]))

    def select(self, keep: np.ndarray, ign_keep: np.ndarray) -> "_Labels":
        return _Labels(self.boxes[keep], self.classes[keep], self.ign_boxes[ign_keep],
                       self.ign_classes[ign_keep], self.scales[keep])


def _scale_shift(sx: float, sy: float, dx: float = 0.0, dy: float = 0.0):
    def fn(b):
        return b * np.array([sx, sy, sx, sy]) + np.array([dx, dy, dx, dy])
    return fn


def _clip(h: float, w: float):
    def fn(b):
        b = b.copy()
        b[:, 0::2] = b[:, 0::2].clip(0, w)
        b[:, 1::2] = b[:, 1::2].clip(0, h)
        return b
    return fn


def _hflip(w: float):
    def fn(b):
        return np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
    return fn


# ----------------------------------------------------------------------------- dataset

class MosaicDataset(torch.utils.data.Dataset):
    """Mosaic + random affine + MixUp + HSV + flip + letterbox over sod2 dataset dicts
    (module docstring: output format, pipeline, ignore handling, the shared switch)."""

    def __init__(
        self,
        dataset: Union[List[dict], torch.utils.data.Dataset],
        input_size: Sequence[int] = (640, 640),
        *,
        image_format: str = "BGR",
        mosaic_prob: float = 1.0,
        enable_mixup: bool = True,
        mixup_prob: float = 1.0,
        degrees: float = 10.0,
        translate: float = 0.1,
        mosaic_scale: Sequence[float] = (0.1, 2.0),
        shear: float = 2.0,
        mixup_scale: Sequence[float] = (0.5, 1.5),
        hsv_prob: float = 1.0,
        hsv_gains: Sequence[float] = (5, 30, 30),
        flip_prob: float = 0.5,
        max_labels: int = 120,
        min_box_size: float = 1.0,
        fill: int = 114,
        ignore_fill: Optional[Union[str, Sequence[float]]] = None,
        enabled: bool = True,
    ):
        """
        Args:
            dataset: sod2 dataset dicts (a list, serialized internally as Detectron2's
                ``DatasetFromList`` does, or a map-style dataset of dicts).
            input_size: (H, W) of every output image.
            image_format: "BGR" (YOLOX) or "RGB".
            mosaic_prob: probability of Mosaic (+ affine + MixUp) while enabled.
            enable_mixup, mixup_prob: MixUp on/off and its probability (mosaic branch only).
            degrees, translate, mosaic_scale, shear: the random affine (see the module).
            mixup_scale: range of MixUp's scale jitter.
            hsv_prob, hsv_gains: probability and (H, S, V) maximal offsets of the HSV jitter.
            flip_prob: probability of the horizontal flip.
            max_labels: at most this many objects per output image (YOLOX's wrapper: 120).
            min_box_size: objects with min(w, h) <= this (pixels, output image) are dropped.
            fill: grey level of the canvas, affine border and letterbox padding.
            ignore_fill: None, "mean" or a colour: paint class-agnostic ignore regions when
                an image is loaded (as ``SODDatasetMapper(ignore_fill=...)``).
            enabled: initial state of strong augmentation (Mosaic/affine/MixUp).
        """
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"MosaicDataset: image_format must be BGR or RGB, got {image_format!r}")
        self._dicts = DatasetFromList(list(dataset), copy=True) if isinstance(dataset, list) else dataset
        if len(self._dicts) == 0:
            raise ValueError("MosaicDataset: the dataset is empty")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.image_format = image_format
        self.mosaic_prob, self.enable_mixup, self.mixup_prob = mosaic_prob, enable_mixup, mixup_prob
        self.degrees, self.translate, self.shear = degrees, translate, shear
        self.mosaic_scale, self.mixup_scale = tuple(mosaic_scale), tuple(mixup_scale)
        self.hsv_prob, self.hsv_gains, self.flip_prob = hsv_prob, tuple(hsv_gains), flip_prob
        self.max_labels, self.min_box_size, self.fill = max_labels, min_box_size, int(fill)
        self.ignore_fill = ignore_fill
        # shared memory: inherited by the data loader workers (fork or spawn)
        self._enabled = mp.Value("b", 1 if enabled else 0, lock=False)
        # MixUp draws among images with at least one object
        source = dataset if isinstance(dataset, list) else [self._dicts[i] for i in range(len(self._dicts))]
        self._with_objects = np.array([i for i, d in enumerate(source) if any(
            not is_ignored(a) for a in d.get("annotations") or [])],
            dtype=np.int64)

    # -- the switch
    @property
    def enabled(self) -> bool:
        """Strong augmentation (Mosaic, affine, MixUp) on; read from shared memory."""
        return bool(self._enabled.value)

    def set_strong_augmentation(self, enabled: bool) -> None:
        """Switch Mosaic/affine/MixUp on or off, in this process and its data loader workers."""
        self._enabled.value = 1 if enabled else 0

    def __len__(self) -> int:
        return len(self._dicts)

    # -- loading
    def _load(self, i: int) -> Tuple[dict, np.ndarray, _Labels]:
        d = self._dicts[int(i)]
        img = read_image(d["file_name"], format=self.image_format)
        h, w = img.shape[:2]
        annos = d.get("annotations") or []
        if annos and self.ignore_fill is not None:
            img = fill_ignore_regions(img, annos, self.ignore_fill)
        obj, cls, ign, ign_cls = [], [], [], []
        for a in annos:
            b = np.array(BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS), dtype=np.float64)
            b[0::2] = b[0::2].clip(0, w)
            b[1::2] = b[1::2].clip(0, h)
            if b[2] <= b[0] or b[3] <= b[1]:
                continue
            if is_ignored(a):
                ign.append(b)
                ign_cls.append(int(a["category_id"]))
            else:
                obj.append(b)
                cls.append(int(a["category_id"]))
        return d, img, _Labels(obj, cls, ign, ign_cls)

    # -- strong augmentation
    def _mosaic(self, idx: int, rng) -> Tuple[np.ndarray, _Labels]:
        H, W = self.input_size
        yc = int(rng.uniform(0.5 * H, 1.5 * H))
        xc = int(rng.uniform(0.5 * W, 1.5 * W))
        indices = [idx] + [int(rng.randint(0, len(self))) for _ in range(3)]
        canvas = np.full((2 * H, 2 * W, 3), self.fill, dtype=np.uint8)
        parts = []
        for k, i in enumerate(indices):
            _, img, lab = self._load(i)
            h0, w0 = img.shape[:2]
            r = min(H / h0, W / w0)
            img = cv2.resize(img, (int(w0 * r), int(h0 * r)), interpolation=cv2.INTER_LINEAR)
            h, w = img.shape[:2]
            (cx1, cy1, cx2, cy2), (sx1, sy1, sx2, sy2) = mosaic_placement(k, xc, yc, w, h, H, W)
            canvas[cy1:cy2, cx1:cx2] = img[sy1:sy2, sx1:sx2]
            parts.append(lab.map(_scale_shift(r, r, cx1 - sx1, cy1 - sy1), r * r))
        labels = _Labels.cat(parts).map(_clip(2 * H, 2 * W))
        M = random_affine_matrix(self.input_size, self.degrees, self.translate, self.mosaic_scale,
                                 self.shear, rng)
        img = cv2.warpAffine(canvas, M, dsize=(W, H), borderValue=(self.fill,) * 3)
        labels = labels.map(lambda b: affine_boxes(b, M, (H, W)), abs(float(np.linalg.det(M[:, :2]))))
        return img, labels

    def mixup(self, img: np.ndarray, labels: _Labels, img2: np.ndarray, labels2: _Labels,
              jit: float, flip: bool, rng=np.random) -> Tuple[np.ndarray, _Labels]:
        """Blend ``img2`` (any size) into ``img`` ((H, W, 3), the affine output).

        ``img2`` is letterboxed (top-left, ``fill``) to (H, W), resized by ``jit``, flipped
        if ``flip``, pasted top-left on a zero canvas of at least (H, W), cropped to (H, W)
        at a random offset; result ``uint8(0.5 img + 0.5 crop)``, labels concatenated."""
        H, W = self.input_size
        cp, r = letterbox(img2, (H, W), self.fill)
        oh, ow = int(H * jit), int(W * jit)
        cp = cv2.resize(cp, (ow, oh))
        r *= jit
        lab2 = labels2.map(_scale_shift(r, r), r * r).map(_clip(oh, ow))
        if flip:
            cp = cp[:, ::-1]
            lab2 = lab2.map(_hflip(ow))
        ph, pw = max(oh, H), max(ow, W)
        padded = np.zeros((ph, pw, 3), dtype=np.uint8)
        padded[:oh, :ow] = cp
        y0 = int(rng.randint(0, ph - H)) if ph > H else 0
        x0 = int(rng.randint(0, pw - W)) if pw > W else 0
        crop = padded[y0:y0 + H, x0:x0 + W]
        lab2 = lab2.map(_scale_shift(1, 1, -x0, -y0)).map(_clip(H, W))
        out = (0.5 * img.astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
        return out, _Labels.cat([labels, lab2])

    # -- always
    def _finish(self, img: np.ndarray, labels: _Labels, rng) -> Tuple[np.ndarray, _Labels]:
        if rng.rand() < self.hsv_prob:
            img = augment_hsv(img, random_hsv_gains(self.hsv_gains, rng), self.image_format)
        if rng.rand() < self.flip_prob:
            img = img[:, ::-1]
            labels = labels.map(_hflip(img.shape[1]))
        img, r = letterbox(np.ascontiguousarray(img), self.input_size, self.fill)
        labels = labels.map(_scale_shift(r, r), r * r)
        wh = labels.boxes[:, 2:] - labels.boxes[:, :2]
        keep = np.nonzero(wh.min(1) > self.min_box_size)[0][: self.max_labels]
        iwh = labels.ign_boxes[:, 2:] - labels.ign_boxes[:, :2]
        return img, labels.select(keep, iwh.min(1) > 0)

    def __getitem__(self, idx: int) -> Dict:
        rng = np.random
        idx = int(idx)
        mosaic = self.enabled and rng.rand() < self.mosaic_prob
        if mosaic:
            d = self._dicts[idx]
            img, labels = self._mosaic(idx, rng)
            if (self.enable_mixup and len(labels.boxes) > 0 and len(self._with_objects)
                    and rng.rand() < self.mixup_prob):
                jit = rng.uniform(self.mixup_scale[0], self.mixup_scale[1])
                flip = rng.uniform(0, 1) > 0.5
                _, img2, labels2 = self._load(self._with_objects[rng.randint(0, len(self._with_objects))])
                img, labels = self.mixup(img, labels, img2, labels2, jit, flip, rng)
        else:
            d, img, labels = self._load(idx)
        img, labels = self._finish(img, labels, rng)
        return self._output(d, img, labels, mosaic)

    def _output(self, d: dict, img: np.ndarray, labels: _Labels, mosaic: bool) -> Dict:
        H, W = self.input_size
        out = {k: v for k, v in d.items() if k != "annotations"}
        out.update(height=H, width=W, mosaic=bool(mosaic))
        out["image"] = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)))
        inst = Instances((H, W))
        inst.gt_boxes = Boxes(torch.as_tensor(labels.boxes, dtype=torch.float32).reshape(-1, 4))
        inst.gt_classes = torch.as_tensor(labels.classes, dtype=torch.int64)
        area = (labels.boxes[:, 2] - labels.boxes[:, 0]) * (labels.boxes[:, 3] - labels.boxes[:, 1])
        inst.gt_orig_areas = torch.as_tensor(area / labels.scales, dtype=torch.float32)
        out["instances"] = inst
        ign = Instances((H, W))
        ign.gt_boxes = Boxes(torch.as_tensor(labels.ign_boxes, dtype=torch.float32).reshape(-1, 4))
        ign.gt_classes = torch.as_tensor(labels.ign_classes, dtype=torch.int64)
        out["ignore_instances"] = ign
        return out
