"""
The dataset mapper of sod2: Detectron2's ``DatasetMapper`` contract plus what small-object
data needs.

* Images are read with :func:`sod2.data.io.read_image`, so grayscale and 16-bit (thermal)
  files arrive as 3-channel 8-bit like every other image.
* Ignored boxes and regions (``ignore: 1`` annotations, see
  :mod:`sod2.data.datasets.common`) never become objects. In training they are
  transformed with the image and returned as ``dataset_dict["ignore_instances"]``
  (``gt_boxes``; ``gt_classes`` = class or -1 for class-agnostic regions) for models
  that use them, and optionally painted over (``ignore_fill``) like SODA-D's and
  TinyBenchmark's "erased" training images, except where an object box lies.
* Every object keeps its area in the ORIGINAL image's pixels (``gt_orig_areas``): its box
  after the transforms divided by the transforms' area scale (:func:`transform_area_scale`),
  so a box clipped by a crop counts with its visible part, as the official CFINet computes
  it (box / scale factor). CFINet's CRPN sizes its dynamic IoU threshold with it.
* At inference, a test transform of YOLOX's official resize (:class:`~sod2.data.transforms.
  YOLOXTestResize`) leaves its single ratio r in ``dataset_dict["resize_ratio"]``: YOLOX maps
  its boxes back by dividing by r, as the official evaluator, instead of Detectron2's
  per-axis output / input rescale (which differs where ``int(h * r)`` truncated).
"""
from __future__ import annotations

import copy
import logging
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Boxes, BoxMode, Instances

from .datasets.common import is_ignore_region, is_ignored
from .io import read_image
from .transforms import single_resize_ratio

logger = logging.getLogger(__name__)

__all__ = ["SODDatasetMapper", "fill_ignore_regions", "transform_area_scale"]


def fill_ignore_regions(image: np.ndarray, annotations: Sequence[dict],
                        value: Union[str, Sequence[float]] = "mean") -> np.ndarray:
    """Paint class-agnostic ignore regions (:func:`~sod2.data.datasets.common.is_ignore_region`),
    keeping the pixels inside every box of a class (objects and class-specific ignored boxes).

    Args:
        image: (H, W, C) uint8 image (modified copy returned).
        annotations: annotation dicts in XYWH_ABS or XYXY_ABS.
        value: "mean" (the image's mean colour) or a per-channel colour.
    """
    H, W = image.shape[:2]
    mask = np.zeros((H, W), dtype=bool)

    def xyxy(a):
        b = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
        x0, y0 = int(np.floor(max(b[0], 0))), int(np.floor(max(b[1], 0)))
        x1, y1 = int(np.ceil(min(b[2], W))), int(np.ceil(min(b[3], H)))
        return x0, y0, x1, y1

    regions = [a for a in annotations if is_ignore_region(a)]
    if not regions:
        return image
    for a in regions:
        x0, y0, x1, y1 = xyxy(a)
        mask[y0:y1, x0:x1] = True
    for a in annotations:
        if a["category_id"] >= 0:  # objects (and class-specific ignored boxes) stay visible
            x0, y0, x1, y1 = xyxy(a)
            mask[y0:y1, x0:x1] = False
    out = image.copy()
    color = image.reshape(-1, image.shape[2]).mean(0) if isinstance(value, str) else value
    out[mask] = np.asarray(color, dtype=np.float64).round().astype(image.dtype)
    return out


def transform_area_scale(transforms: T.TransformList) -> float:
    """How much ``transforms`` multiply areas: |det| of their linear part, measured by
    mapping three points (exact for resizes, flips, crops, paddings and any affine map).

    Args:
        transforms: the transforms applied to an image (Detectron2 ``TransformList``).
    Returns:
        area after / area before (1.0 for flips and crops, 2.25 for a x1.5 resize).
    """
    probe = np.array([[0.0, 0.0], [1000.0, 0.0], [0.0, 1000.0]], dtype=np.float64)
    p = transforms.apply_coords(probe.copy())
    (ax, ay), (bx, by) = p[1] - p[0], p[2] - p[0]
    return abs(float(ax * by - ay * bx)) / 1e6


class SODDatasetMapper:
    """Map a sod2 dataset dict to the model input format.

    Output keys (training): ``image`` (C, H, W) uint8 tensor in ``image_format`` order,
    ``instances`` (objects: ``gt_boxes``, ``gt_classes``, ``gt_orig_areas`` (R,) the boxes'
    areas in original-image pixels), ``ignore_instances``
    (ignored boxes and regions), plus the input dict's other keys (``patch``, ...).
    Inference: ``image`` and the metadata keys, no annotations, and ``resize_ratio`` (float)
    when the only test augmentation is :class:`~sod2.data.transforms.YOLOXTestResize`.
    """

    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[Union[T.Augmentation, T.Transform]],
        image_format: str = "BGR",
        ignore_fill: Optional[Union[str, Sequence[float]]] = None,
        filter_empty: bool = True,
    ):
        """
        Args:
            is_train: training (annotations kept) or inference.
            augmentations: Detectron2 augmentations applied in order.
            image_format: "BGR" or "RGB", the model's input channel order.
            ignore_fill: None, "mean" or a colour: paint class-agnostic ignore regions
                in training images.
            filter_empty: drop objects whose box became empty after the transforms.
        """
        if image_format not in ("BGR", "RGB"):
            raise ValueError(f"SODDatasetMapper: image_format must be BGR or RGB, got {image_format!r}")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_fill = ignore_fill
        self.filter_empty = filter_empty
        logger.info("[SODDatasetMapper] %s augmentations: %s", "train" if is_train else "test",
                    augmentations)

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annos = dataset_dict.pop("annotations", None)
        if self.is_train and annos and self.ignore_fill is not None:
            image = fill_ignore_regions(image, annos, self.ignore_fill)

        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if not self.is_train:
            ratio = single_resize_ratio(transforms)
            if ratio is not None:
                dataset_dict["resize_ratio"] = ratio
        if not self.is_train or annos is None:
            return dataset_dict

        objects, ignored = [], []
        for obj in annos:
            t = utils.transform_instance_annotations(obj, transforms, image_shape)
            (ignored if is_ignored(obj) else objects).append(t)
        instances = utils.annotations_to_instances(objects, image_shape)
        instances.gt_orig_areas = instances.gt_boxes.area() / transform_area_scale(transforms)
        dataset_dict["instances"] = utils.filter_empty_instances(instances) if self.filter_empty else instances
        ign = Instances(image_shape)
        ign.gt_boxes = Boxes(torch.as_tensor(np.array([o["bbox"] for o in ignored], dtype=np.float32).reshape(-1, 4)))
        ign.gt_classes = torch.as_tensor([int(o["category_id"]) for o in ignored], dtype=torch.int64)
        dataset_dict["ignore_instances"] = ign
        return dataset_dict
