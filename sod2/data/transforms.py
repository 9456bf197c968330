"""
YOLOX's official test-time resize as a Detectron2 ``Augmentation`` / ``Transform`` pair.

The official evaluation of YOLOX (``tools/eval.py``: ``COCODataset(img_size=test_size)`` with
``ValTransform``, then ``COCOEvaluator``) does, for an (h, w) BGR image and a test size (H, W):

1. ``COCODataset.load_resized_img``: ``r = min(H / h, W / w)``, ``cv2.resize`` with
   ``INTER_LINEAR`` to ``(int(h * r), int(w * r))`` (``int`` truncates);
2. ``ValTransform`` -> ``preproc``: the same on the result (``r2 = min(H / h1, W / w1)``, resize
   to ``(int(h1 * r2), int(w1 * r2))``), pasted top-left into an (H, W) canvas of 114, float32,
   no normalisation. ``r2`` is 1 and the resize a copy unless ``w * (W / w)`` rounds below
   ``W`` in floating point (then ``int`` gives W - 1 and step 2 stretches that side to W:
   about 3% of the sizes, e.g. 330x300 at 416);
3. ``COCOEvaluator.convert_to_coco_format``: the network's boxes divided by the single ratio
   ``r`` of step 1 (computed from the original size), not clipped to the image.

:class:`YOLOXTestResize` does steps 1-2 without the padding (YOLOX pads its batch with 114 to
the square test size: ``preprocess_image`` with ``backbone.square_pad``); its transform's
``ratio`` is the ``r`` of step 3, which :class:`~sod2.data.SODDatasetMapper` stores as
``dataset_dict["resize_ratio"]`` for the model to divide its boxes by. The official demo
(``tools/demo.py``) does step 2 alone: ``YOLOXTestResize(size, pre_resize=False)``.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np
from detectron2.data import transforms as T

from ..errors import UserError

__all__ = ["YOLOXTestResize", "YOLOXResizeTransform", "yolox_resize_shape", "single_resize_ratio"]


def yolox_resize_shape(h: int, w: int, size: Tuple[int, int]) -> Tuple[float, int, int]:
    """YOLOX's resize of an (h, w) image into ``size`` = (H, W): ``r = min(H / h, W / w)`` and
    the truncated output size ``(int(h * r), int(w * r))``. Returns (r, new_h, new_w)."""
    H, W = size
    r = min(H / h, W / w)
    return r, int(h * r), int(w * r)


class YOLOXResizeTransform(T.Transform):
    """Resize an (h, w) image as YOLOX's official evaluation does (see the module docstring)
    and scale coordinates by the single ratio ``ratio`` = min(H / h, W / w).

    Attributes:
        h, w: input size. size: (H, W) test size. pre_resize: the dataset's resize before
        ``preproc`` (step 1). ratio: r. steps: the (h', w') sizes cv2 resizes to, in order
        (one or two; a size equal to the current one is skipped, as cv2 copies it).
        new_h, new_w: output size (<= H, W).
    """

    def __init__(self, h: int, w: int, size: Tuple[int, int], pre_resize: bool = True):
        super().__init__()
        h, w, size = int(h), int(w), (int(size[0]), int(size[1]))
        ratio, h1, w1 = yolox_resize_shape(h, w, size)
        steps = [(h1, w1)]
        if pre_resize and h1 > 0 and w1 > 0:
            steps.append(yolox_resize_shape(h1, w1, size)[1:])
        if min(min(s) for s in steps) <= 0:
            raise UserError(f"YOLOXTestResize({size[0]}x{size[1]}): a {w}x{h} image would be resized to "
                            f"{steps[-1][1]}x{steps[-1][0]} pixels (a side of 0): the image is too elongated")
        if not (math.isfinite(ratio) and ratio > 0):
            raise UserError(f"YOLOXTestResize: invalid resize ratio {ratio} for a {w}x{h} image")
        self._set_attributes(dict(h=h, w=w, size=size, pre_resize=pre_resize, ratio=ratio, steps=steps,
                                  new_h=steps[-1][0], new_w=steps[-1][1]))

    def _resize(self, img: np.ndarray, interp: int) -> np.ndarray:
        assert img.shape[:2] == (self.h, self.w), f"YOLOXResizeTransform: got {img.shape[:2]}, expected " \
                                                  f"{(self.h, self.w)}"
        for sh, sw in self.steps:
            if img.shape[:2] != (sh, sw):  # cv2.resize to the same size is a copy
                out = cv2.resize(np.ascontiguousarray(img), (sw, sh), interpolation=interp)
                img = out.reshape(sh, sw, *img.shape[2:])  # cv2 drops a trailing axis of 1
        return img

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """(h, w[, C]) -> (new_h, new_w[, C]), same dtype, OpenCV ``INTER_LINEAR``."""
        return self._resize(img, cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        """(h, w) labels -> (new_h, new_w), nearest neighbour."""
        return self._resize(segmentation, cv2.INTER_NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) x, y -> x * r, y * r: the official mapping (its evaluator divides by r)."""
        return coords * self.ratio

    def inverse(self) -> T.Transform:
        raise NotImplementedError("YOLOXResizeTransform has no inverse transform: divide the "
                                  "coordinates by its ratio")


class YOLOXTestResize(T.Augmentation):
    """YOLOX's official test resize to fit ``size`` (int: a square), without the padding.

    Args:
        size: the test size: int (H = W) or (H, W), e.g. 640 (416 for Nano/Tiny).
        pre_resize: True (default): as the official evaluation (the dataset's resize, then
            ``preproc``); False: ``preproc`` alone, as the official demo.
    """

    def __init__(self, size, pre_resize: bool = True):
        super().__init__()
        size = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
        if min(size) <= 0:
            raise UserError(f"YOLOXTestResize: size must be positive, got {size}")
        self._init(dict(size=size, pre_resize=bool(pre_resize)))

    def get_transform(self, image: np.ndarray) -> YOLOXResizeTransform:
        h, w = image.shape[:2]
        return YOLOXResizeTransform(h, w, self.size, self.pre_resize)


def single_resize_ratio(transforms: T.TransformList) -> Optional[float]:
    """The ratio of a test-time :class:`YOLOXResizeTransform` when it is the only geometric
    transform (NoOps aside), else None if there is none.

    Raises:
        UserError: a YOLOXResizeTransform together with other transforms (their mapping back
            to the original image is not the single ratio).
    """
    ts = [t for t in transforms.transforms if not isinstance(t, T.NoOpTransform)]
    resizes = [t for t in ts if isinstance(t, YOLOXResizeTransform)]
    if not resizes:
        return None
    if len(ts) != 1:
        raise UserError("YOLOXTestResize must be the only test-time augmentation (got "
                        f"{[type(t).__name__ for t in ts]}): the boxes are mapped back by its ratio alone")
    return float(resizes[0].ratio)
