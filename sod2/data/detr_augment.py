"""
RT-DETR's training augmentations (lyuwenyu/RT-DETR ``rtdetr_pytorch``, v1, which uses
torchvision 0.15's ``transforms.v2``) as Detectron2 augmentations and transforms, and the
mapper that runs them with sod2's ignore regions.

The reference's training pipeline, in order (spec B.7), and what each step is here:

1. ``RandomPhotometricDistort(p=0.5)``          -> :class:`RandomPhotometricDistort`
2. ``RandomZoomOut(fill=0)`` (side 1-4, p 0.5)  -> :class:`RandomZoomOut`
3. ``RandomIoUCrop(p=0.8)``                     -> :class:`RandomIoUCrop` (torchvision's sampler)
4. ``SanitizeBoundingBox(min_size=1)``          -> :class:`SanitizeBoxes`
5. ``RandomHorizontalFlip()``                   -> Detectron2's ``RandomFlip``
6. ``Resize([640, 640])`` (aspect not kept)     -> Detectron2's ``Resize((640, 640))`` (PIL bilinear)
7. ``SanitizeBoundingBox(min_size=1)``          -> :class:`DETRDatasetMapper` (``min_size``)

How torchvision's box semantics are kept inside Detectron2's transform framework (where a
transform maps boxes one by one and cannot remove them, and ``transform_instance_annotations``
clips to the image only at the end):

* the IoU crop clamps the boxes to the crop (torchvision's crop kernel) and turns the boxes
  whose centre is not strictly inside the crop into the empty box ``[0, 0, 0, 0]``
  (torchvision "marks" them the same way for a later ``SanitizeBoundingBoxes``);
* :class:`SanitizeBoxesTransform` clamps to the current image and empties the boxes
  narrower or lower than ``min_size`` there;
* an empty box stays empty through flips and resizes, and :class:`DETRDatasetMapper`
  removes, after the last transform, every box under ``min_size`` pixels (the final
  sanitize), which includes them.

Ignore regions (``ignore: 1`` / crowd annotations, sod2's ``ignore_instances``) are never
objects: they do not steer the IoU crop's sampler (the reference only sees its target
boxes), and they go through the geometric transforms without the object-only rules
(:func:`ignore_region_transforms`): a region cut by the crop keeps its visible part, where an
object whose centre left the crop is dropped as in the reference. Painting them over
(``ignore_fill``) happens before any transform, as in :class:`sod2.data.SODDatasetMapper`.

Randomness comes from NumPy's global generator, like Detectron2's own augmentations
(Detectron2 seeds it per data-loader worker).
"""
from __future__ import annotations

import copy
import logging
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torchvision.transforms.functional as TVF
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances
from fvcore.transforms.transform import CropTransform, NoOpTransform, PadTransform, Transform
from PIL import Image

from .datasets.common import is_ignored
from .io import read_image
from .mapper import SODDatasetMapper, fill_ignore_regions, transform_area_scale

logger = logging.getLogger(__name__)

__all__ = [
    "PhotometricDistortTransform", "RandomPhotometricDistort",
    "ZoomOutTransform", "RandomZoomOut",
    "IoUCropTransform", "RandomIoUCrop", "sample_iou_crop",
    "SanitizeBoxesTransform", "SanitizeBoxes",
    "ignore_region_transforms", "DETRDatasetMapper",
]

_Range = Tuple[float, float]


# --------------------------------------------------------------------------- photometric

class PhotometricDistortTransform(Transform):
    """Colour changes of SSD's photometric distortion with fixed parameters, applied as the
    reference applies them to its PIL images (torchvision's PIL kernels: ``ImageEnhance``
    for brightness/contrast/saturation, an HSV shift for hue), then a channel permutation.

    Order: brightness, contrast (if ``contrast_before``), saturation, hue, contrast (if not
    ``contrast_before``), permutation. A ``None`` factor skips that step.

    Args:
        brightness, contrast, saturation: factors (1 = unchanged).
        hue: shift of the hue in [-0.5, 0.5] (fraction of the colour circle).
        contrast_before: contrast before saturation/hue (else after).
        permutation: new channel order (indices into the RGB channels), or None.
        image_format: "RGB" or "BGR", the order of the images this transform receives; the
            colour operations work on RGB (grey = 0.299 R + 0.587 G + 0.114 B), the result is
            returned in the same order.

    Images are (H, W, 3) uint8; boxes and coordinates are unchanged.
    """

    def __init__(self, brightness: Optional[float] = None, contrast: Optional[float] = None,
                 saturation: Optional[float] = None, hue: Optional[float] = None,
                 contrast_before: bool = True, permutation: Optional[Sequence[int]] = None,
                 image_format: str = "RGB"):
        super().__init__()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"PhotometricDistortTransform: image_format must be RGB or BGR, got {image_format!r}")
        permutation = None if permutation is None else tuple(int(i) for i in permutation)
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"PhotometricDistortTransform: expected an (H, W, 3) uint8 image, got "
                             f"{img.dtype} {img.shape}")
        bgr = self.image_format == "BGR"
        pil = Image.fromarray(np.ascontiguousarray(img[..., ::-1] if bgr else img))
        if self.brightness is not None:
            pil = TVF.adjust_brightness(pil, self.brightness)
        if self.contrast is not None and self.contrast_before:
            pil = TVF.adjust_contrast(pil, self.contrast)
        if self.saturation is not None:
            pil = TVF.adjust_saturation(pil, self.saturation)
        if self.hue is not None:
            pil = TVF.adjust_hue(pil, self.hue)
        if self.contrast is not None and not self.contrast_before:
            pil = TVF.adjust_contrast(pil, self.contrast)
        out = np.asarray(pil)
        if self.permutation is not None:
            out = out[..., list(self.permutation)]
        if bgr:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> Transform:
        return NoOpTransform()  # colours are not restored (as Detectron2's ColorTransform)


class RandomPhotometricDistort(T.Augmentation):
    """torchvision's ``RandomPhotometricDistort`` (RT-DETR: p = 0.5; Paddle: 0.8): each of
    brightness, contrast, saturation and hue is changed with probability ``p`` by a factor
    drawn uniformly from its range; contrast goes before or after saturation/hue with
    probability 1/2; the channels are randomly permuted with probability ``p``.

    Args:
        brightness, contrast, saturation, hue: (min, max) ranges (torchvision's defaults).
        p: probability of each step.
        image_format: channel order of the images ("RGB" or "BGR": the mapper's format).
    """

    def __init__(self, brightness: _Range = (0.875, 1.125), contrast: _Range = (0.5, 1.5),
                 saturation: _Range = (0.5, 1.5), hue: _Range = (-0.05, 0.05), p: float = 0.5,
                 image_format: str = "RGB"):
        super().__init__()
        if not -0.5 <= hue[0] <= hue[1] <= 0.5:
            raise ValueError(f"RandomPhotometricDistort: hue range must lie in [-0.5, 0.5], got {hue}")
        self._init(locals())

    def _maybe(self, rng: _Range) -> Optional[float]:
        # torchvision draws "rand < p" and then the value for each step, in this order
        if np.random.rand() < self.p:
            return float(np.random.uniform(rng[0], rng[1]))
        return None

    def get_transform(self, image: np.ndarray) -> Transform:
        b, c, s, h = (self._maybe(r) for r in (self.brightness, self.contrast, self.saturation, self.hue))
        contrast_before = bool(np.random.rand() < 0.5)
        perm = tuple(np.random.permutation(image.shape[2])) if np.random.rand() < self.p else None
        if b is None and c is None and s is None and h is None and perm is None:
            return NoOpTransform()
        return PhotometricDistortTransform(b, c, s, h, contrast_before, perm, self.image_format)


# --------------------------------------------------------------------------- zoom out

class ZoomOutTransform(PadTransform):
    """Detectron2's ``PadTransform`` whose fill may be one value per channel (in the image's
    channel order): the image is placed at (x0, y0) on a canvas of
    (orig_h + y0 + y1, orig_w + x0 + x1) filled with ``pad_value``; boxes move by (x0, y0)."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        out = np.empty((h + self.y0 + self.y1, w + self.x0 + self.x1) + img.shape[2:], dtype=img.dtype)
        out[...] = np.asarray(self.pad_value, dtype=img.dtype)
        out[self.y0:self.y0 + h, self.x0:self.x0 + w] = img
        return out


class RandomZoomOut(T.Augmentation):
    """torchvision's ``RandomZoomOut`` (SSD's "expand"): with probability ``p``, place the
    image on a canvas ``r`` times its size, ``r ~ U(side_range)``, at a uniformly random
    position: canvas ``(int(H r), int(W r))``, offset ``left = int((W' - W) u)``,
    ``top = int((H' - H) v)``, u, v ~ U(0, 1).

    Args:
        fill: canvas value, a number or one per channel in the image's order (RT-DETR: 0;
            Paddle's ``RandomExpand`` fills with the RGB mean (123.675, 116.28, 103.53)).
        side_range: (min, max) canvas / image side ratio, min >= 1.
        p: probability of zooming out.
    """

    def __init__(self, fill: Union[float, Sequence[float]] = 0, side_range: _Range = (1.0, 4.0), p: float = 0.5):
        super().__init__()
        if side_range[0] < 1.0 or side_range[0] > side_range[1]:
            raise ValueError(f"RandomZoomOut: invalid side_range {tuple(side_range)} (need 1 <= min <= max)")
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        if np.random.rand() >= self.p:
            return NoOpTransform()
        h, w = image.shape[:2]
        r = np.random.uniform(self.side_range[0], self.side_range[1])
        canvas_w, canvas_h = int(w * r), int(h * r)
        left = int((canvas_w - w) * np.random.rand())
        top = int((canvas_h - h) * np.random.rand())
        fill = self.fill if np.isscalar(self.fill) else tuple(self.fill)
        return ZoomOutTransform(left, top, canvas_w - w - left, canvas_h - h - top, orig_w=w, orig_h=h,
                                pad_value=fill)


# --------------------------------------------------------------------------- IoU crop

def _iou_with_box(boxes: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """IoU of (N, 4) XYXY boxes with one XYXY box."""
    lt = np.maximum(boxes[:, :2], box[:2])
    rb = np.minimum(boxes[:, 2:], box[2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=1)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None).prod(axis=1)
    area_box = (box[2] - box[0]) * (box[3] - box[1])
    return inter / (area + area_box - inter)


def _centres_inside(boxes: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
    """torchvision's rule: the box centre strictly inside the crop."""
    cx = 0.5 * (boxes[:, 0] + boxes[:, 2])
    cy = 0.5 * (boxes[:, 1] + boxes[:, 3])
    return (left < cx) & (cx < right) & (top < cy) & (cy < bottom)


def sample_iou_crop(width: int, height: int, boxes: np.ndarray, *, min_scale: float = 0.3,
                    max_scale: float = 1.0, min_aspect_ratio: float = 0.5, max_aspect_ratio: float = 2.0,
                    sampler_options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
                    trials: int = 40, max_option_draws: int = 1000) -> Optional[Tuple[int, int, int, int]]:
    """torchvision's ``RandomIoUCrop`` sampler (SSD's), with NumPy's generator.

    Repeatedly draw a minimum IoU from ``sampler_options`` (a value >= 1 means "no crop");
    for it, try up to ``trials`` crops: size ``(int(W s_w), int(H s_h))``, ``s ~
    U(min_scale, max_scale)``, aspect ``w / h`` within the limits, position uniform, not
    empty; accepted when at least one box centre lies strictly inside it and the best IoU of
    those boxes with the crop reaches the minimum.

    Differences, both only for cases where torchvision never returns: no boxes -> None (no
    crop; torchvision ends the same way once it draws the "no crop" option); after
    ``max_option_draws`` draws without success -> None (torchvision loops forever when
    ``sampler_options`` has no value >= 1 and no crop can satisfy it).

    Args:
        width, height: image size.
        boxes: (N, 4) XYXY object boxes in pixels, inside the image.
    Returns:
        (left, top, crop_w, crop_h), or None for "no crop".
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    options = list(sampler_options)
    for _ in range(max_option_draws):
        min_iou = options[np.random.randint(len(options))]
        if min_iou >= 1.0:
            return None
        for _ in range(trials):
            s = min_scale + (max_scale - min_scale) * np.random.rand(2)
            new_w, new_h = int(width * s[0]), int(height * s[1])
            if new_w <= 0 or new_h <= 0 or not min_aspect_ratio <= new_w / new_h <= max_aspect_ratio:
                continue
            u = np.random.rand(2)
            left, top = int((width - new_w) * u[0]), int((height - new_h) * u[1])
            right, bottom = left + new_w, top + new_h
            inside = _centres_inside(boxes, left, top, right, bottom)
            if not inside.any():
                continue
            if _iou_with_box(boxes[inside], (left, top, right, bottom)).max() < min_iou:
                continue
            return left, top, new_w, new_h
    return None


class IoUCropTransform(CropTransform):
    """A crop ``img[y0:y0+h, x0:x0+w]`` with torchvision's ``RandomIoUCrop`` box semantics:
    boxes are clamped to the crop, and a box whose centre (after clamping to the uncropped
    image of ``orig_w`` x ``orig_h``) is not strictly inside the crop becomes ``[0, 0, 0, 0]``
    (dropped by the sanitize steps). Coordinates (polygons, keypoints, the area scale) move as
    in a plain crop. :meth:`as_plain` is the plain ``CropTransform`` (for ignore regions)."""

    def __init__(self, x0: int, y0: int, w: int, h: int, orig_w: int, orig_h: int):
        super().__init__(x0, y0, w, h, orig_w=orig_w, orig_h=orig_h)

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        box = np.asarray(box)
        b = box.reshape(-1, 4).astype(np.float64)
        b = np.clip(b, 0, [self.orig_w, self.orig_h, self.orig_w, self.orig_h])
        inside = _centres_inside(b, self.x0, self.y0, self.x0 + self.w, self.y0 + self.h)
        out = np.clip(b - [self.x0, self.y0, self.x0, self.y0], 0, [self.w, self.h, self.w, self.h])
        out[~inside] = 0.0
        return out.astype(box.dtype if np.issubdtype(box.dtype, np.floating) else np.float64)

    def as_plain(self) -> Transform:
        return CropTransform(self.x0, self.y0, self.w, self.h, orig_w=self.orig_w, orig_h=self.orig_h)


class RandomIoUCrop(T.Augmentation):
    """RT-DETR's ``RandomIoUCrop(p=0.8)``: with probability ``p``, torchvision's IoU crop
    (:func:`sample_iou_crop`, defaults = torchvision's), as an :class:`IoUCropTransform`.

    Needs the object boxes: ``get_transform(image, boxes)`` with ``boxes`` (N, 4) XYXY in
    pixels (an ``AugInput`` with ``boxes``; :class:`DETRDatasetMapper` passes the objects'
    boxes, not the ignore regions).
    """

    def __init__(self, p: float = 0.8, min_scale: float = 0.3, max_scale: float = 1.0,
                 min_aspect_ratio: float = 0.5, max_aspect_ratio: float = 2.0,
                 sampler_options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0), trials: int = 40):
        super().__init__()
        sampler_options = tuple(float(v) for v in sampler_options)
        self._init(locals())

    def get_transform(self, image: np.ndarray, boxes: np.ndarray) -> Transform:
        if boxes is None:
            raise ValueError("RandomIoUCrop needs the object boxes (AugInput(image, boxes=...)); "
                             "use sod2.data.DETRDatasetMapper")
        if np.random.rand() >= self.p:
            return NoOpTransform()
        h, w = image.shape[:2]
        b = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), 0, [w, h, w, h])
        crop = sample_iou_crop(w, h, b, min_scale=self.min_scale, max_scale=self.max_scale,
                               min_aspect_ratio=self.min_aspect_ratio, max_aspect_ratio=self.max_aspect_ratio,
                               sampler_options=self.sampler_options, trials=self.trials)
        if crop is None:
            return NoOpTransform()
        left, top, cw, ch = crop
        return IoUCropTransform(left, top, cw, ch, orig_w=w, orig_h=h)


# --------------------------------------------------------------------------- sanitize

class SanitizeBoxesTransform(Transform):
    """torchvision's ``SanitizeBoundingBoxes(min_size)`` on boxes mapped one at a time: a box is
    clamped to the image (``width`` x ``height``) and becomes ``[0, 0, 0, 0]`` when its width
    or height there is below ``min_size`` (removed later by the mapper's final filter). The
    image and coordinates are unchanged. :meth:`as_plain` is a no-op (for ignore regions)."""

    def __init__(self, min_size: float, width: int, height: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def apply_box(self, box: np.ndarray) -> np.ndarray:
        box = np.asarray(box)
        b = np.clip(box.reshape(-1, 4).astype(np.float64), 0,
                    [self.width, self.height, self.width, self.height])
        small = ((b[:, 2] - b[:, 0]) < self.min_size) | ((b[:, 3] - b[:, 1]) < self.min_size)
        b[small] = 0.0
        return b.astype(box.dtype if np.issubdtype(box.dtype, np.floating) else np.float64)

    def inverse(self) -> Transform:
        return NoOpTransform()

    def as_plain(self) -> Transform:
        return NoOpTransform()


class SanitizeBoxes(T.Augmentation):
    """RT-DETR's ``SanitizeBoundingBox(min_size=1)`` between transforms (after the IoU crop):
    boxes under ``min_size`` pixels in the current image are dropped (see
    :class:`SanitizeBoxesTransform`)."""

    def __init__(self, min_size: float = 1.0):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        h, w = image.shape[:2]
        return SanitizeBoxesTransform(self.min_size, w, h)


def ignore_region_transforms(transforms: T.TransformList) -> T.TransformList:
    """The same geometry without the object-only box rules (IoU crop's centre rule, the
    sanitize steps): what ignore regions go through."""
    return T.TransformList([t.as_plain() if hasattr(t, "as_plain") else t for t in transforms.transforms])


# --------------------------------------------------------------------------- mapper

class DETRDatasetMapper(SODDatasetMapper):
    """:class:`~sod2.data.SODDatasetMapper` for augmentations that need the object boxes
    (RT-DETR's IoU crop) and torchvision's box sanitising.

    Training differs from the parent in three ways: the augmentations see the objects' boxes
    (``AugInput(image, boxes=...)``; ignore regions and crowd boxes excluded); after the last
    transform, objects narrower or lower than ``min_size`` pixels are removed (RT-DETR's final
    ``SanitizeBoundingBox(min_size=1)``; this also removes the boxes the IoU crop and
    :class:`SanitizeBoxes` emptied); ignore regions go through :func:`ignore_region_transforms`
    and those left without area are dropped. Output keys are the parent's (``instances`` with
    ``gt_boxes``, ``gt_classes``, ``gt_orig_areas``; ``ignore_instances``). Inference is the
    parent's.
    """

    def __init__(self, is_train: bool, *, augmentations: List[Union[T.Augmentation, T.Transform]],
                 image_format: str = "RGB", ignore_fill: Optional[Union[str, Sequence[float]]] = None,
                 min_size: float = 1.0):
        """
        Args:
            is_train, augmentations, image_format, ignore_fill: as :class:`SODDatasetMapper`.
            min_size: the final sanitize: objects whose width or height (pixels, after all
                transforms) is below it are removed; 0 removes only empty boxes.
        """
        super().__init__(is_train, augmentations=augmentations, image_format=image_format,
                         ignore_fill=ignore_fill, filter_empty=True)
        self.min_size = float(min_size)

    def __call__(self, dataset_dict: dict) -> dict:
        if not self.is_train:
            return super().__call__(dataset_dict)
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annos = dataset_dict.pop("annotations", None)
        if annos and self.ignore_fill is not None:
            image = fill_ignore_regions(image, annos, self.ignore_fill)
        objects = [a for a in annos or [] if not is_ignored(a)]
        ignored = [a for a in annos or [] if is_ignored(a)]
        boxes = np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in objects],
                         dtype=np.float64).reshape(-1, 4)

        aug_input = T.AugInput(image, boxes=boxes)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if annos is None:
            return dataset_dict

        objs = [utils.transform_instance_annotations(o, transforms, image_shape) for o in objects]
        instances = utils.annotations_to_instances(objs, image_shape)
        instances.gt_orig_areas = instances.gt_boxes.area() / transform_area_scale(transforms)
        b = instances.gt_boxes.tensor
        wh = b[:, 2:] - b[:, :2]
        keep = (wh > 0).all(dim=1) & (wh >= self.min_size).all(dim=1)
        dataset_dict["instances"] = instances[keep]

        plain = ignore_region_transforms(transforms)
        ign_boxes, ign_classes = [], []
        for o in ignored:
            t = utils.transform_instance_annotations(o, plain, image_shape)
            x0, y0, x1, y1 = (float(v) for v in t["bbox"])
            if x1 > x0 and y1 > y0:  # regions that left the image carry nothing
                ign_boxes.append([x0, y0, x1, y1])
                ign_classes.append(int(o["category_id"]))
        ign = Instances(image_shape)
        ign.gt_boxes = Boxes(torch.as_tensor(np.array(ign_boxes, dtype=np.float32).reshape(-1, 4)))
        ign.gt_classes = torch.as_tensor(ign_classes, dtype=torch.int64)
        dataset_dict["ignore_instances"] = ign
        return dataset_dict
