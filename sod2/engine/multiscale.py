"""
Multi-scale training by resizing whole batches (YOLOX's ``random_resize``), for any model
that takes Detectron2's ``list[dict]`` inputs.

The data loader keeps producing images of one ``input_size`` (Mosaic output, letterboxed).
:class:`MultiScaleHook` wraps ``trainer.data_loader`` so that every batch is resized with
:func:`resize_batch` to the current training size, on the model's device, with bilinear
interpolation (``align_corners=False``), and the boxes are rescaled. Every ``period``
iterations, rank 0 draws a new size ``divisor * s`` with ``s`` uniform among the integers
of ``size_range / divisor`` (inclusive; the width follows the aspect of ``input_size``) and
all processes receive it, so that every rank trains at the same size. The first
``period`` iterations (also after ``--resume``) use ``input_size``.

Why model-side and not in the dataset: the size changes with the iteration, which the
data loader workers do not know, and an image already prepared by a worker would keep the
old size; resizing the batch in the trainer's process is exact, and keeps the mosaic
pipeline at one size. Models whose mapper already resizes per image (Detectron2's
``ResizeShortestEdge`` with a list of sizes) do not need this hook.

Resized images are float32 (values 0-255, like the uint8 input); ``gt_orig_areas`` (areas in
the original image) do not change.

RT-DETR's variant (its v1 resizes inside the model forward): ``sizes`` = an explicit list of
heights drawn uniformly (a repeated size is drawn more often: RT-DETR's list holds 640 three
times), ``period=1`` (a new size every iteration) and ``mode="nearest"`` (``F.interpolate``'s
default, which the reference uses). Without ``sizes`` and ``mode`` the behaviour is YOLOX's.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.engine import HookBase
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm

logger = logging.getLogger(__name__)

__all__ = ["resize_batch", "draw_size", "choose_size", "MultiScaleHook"]


def _scale_instances(inst: Instances, new_hw: Tuple[int, int], sx: float, sy: float) -> Instances:
    out = Instances(new_hw)
    for k, v in inst.get_fields().items():
        if k == "gt_boxes":
            v = Boxes(v.tensor * v.tensor.new_tensor([sx, sy, sx, sy]))
        out.set(k, v)
    return out


def resize_batch(batched_inputs: List[Dict], size: Sequence[int], input_size: Sequence[int],
                 device: Optional[torch.device] = None, mode: str = "bilinear") -> List[Dict]:
    """Resize every image of a batch by ``size / input_size`` and rescale its boxes.

    Args:
        batched_inputs: Detectron2 inputs; ``"image"`` (C, H, W) tensors, optional
            ``"instances"`` / ``"ignore_instances"`` with ``gt_boxes`` (R, 4) XYXY.
        size: (h, w) training size for an image of ``input_size``.
        input_size: (h, w) the size the data loader produces.
        device: where the resized images go (default: where they are).
        mode: ``F.interpolate`` mode: "bilinear" (``align_corners=False``, YOLOX) or
            "nearest" (RT-DETR).
    Returns:
        new dicts (the input is not modified): ``"image"`` (C, round(H*sy), round(W*sx))
        float32, boxes scaled by (sx, sy) = (size[1] / input_size[1], size[0] / input_size[0]).
    """
    sy, sx = size[0] / input_size[0], size[1] / input_size[1]
    if sx == 1 and sy == 1:
        return batched_inputs
    out = []
    for d in batched_inputs:
        d = dict(d)
        img = d["image"]
        if device is not None:
            img = img.to(device, non_blocking=True)
        h, w = img.shape[-2:]
        new_hw = (int(round(h * sy)), int(round(w * sx)))
        corners = {"align_corners": False} if mode in ("linear", "bilinear", "bicubic", "trilinear") else {}
        d["image"] = F.interpolate(img[None].float(), size=new_hw, mode=mode, **corners)[0]
        for key in ("instances", "ignore_instances"):
            if key in d:
                d[key] = _scale_instances(d[key], new_hw, sx, sy)
        out.append(d)
    return out


def draw_size(input_size: Sequence[int], size_range: Sequence[int], divisor: int = 32,
              rng: Optional[np.random.RandomState] = None) -> Tuple[int, int]:
    """(h, w): ``h = divisor * s`` with ``s`` uniform in ``[size_range[0] // divisor,
    size_range[1] // divisor]``, ``w = divisor * int(s * input_w / input_h)``."""
    rng = rng if rng is not None else np.random
    s = int(rng.randint(size_range[0] // divisor, size_range[1] // divisor + 1))
    return divisor * s, divisor * int(s * input_size[1] / input_size[0])


def choose_size(input_size: Sequence[int], sizes: Sequence[int], divisor: int = 32,
                rng: Optional[np.random.RandomState] = None) -> Tuple[int, int]:
    """(h, w): ``h`` uniform among the entries of ``sizes`` (repeats count), ``w = divisor *
    int(h / divisor * input_w / input_h)`` (``w = h`` for square inputs)."""
    rng = rng if rng is not None else np.random
    h = int(sizes[rng.randint(len(sizes))])
    return h, divisor * int(h / divisor * input_size[1] / input_size[0])


class _ResizingLoader:
    """Iterates over ``data_loader`` and resizes each batch to ``hook.size``."""

    def __init__(self, data_loader, hook: "MultiScaleHook"):
        self.data_loader = data_loader
        self.hook = hook

    def __iter__(self):
        for batch in self.data_loader:
            yield self.hook.apply(batch)

    def __len__(self):
        return len(self.data_loader)


class MultiScaleHook(HookBase):
    """Resize each training batch to a size redrawn every ``period`` iterations, the same on
    every process (module docstring)."""

    def __init__(self, input_size: Sequence[int] = (640, 640), size_range: Sequence[int] = (480, 800),
                 period: int = 10, divisor: int = 32, sizes: Optional[Sequence[int]] = None,
                 mode: str = "bilinear"):
        """
        Args:
            input_size: (h, w) of the images the data loader produces.
            size_range: (min, max) training height in pixels, multiples of ``divisor``
                (YOLOX: input +- 5 * 32, i.e. 480-800 for 640; Tiny/Nano 320-640).
            period: iterations between two draws (YOLOX: 10; RT-DETR: 1).
            divisor: sizes are multiples of it (the model's largest stride).
            sizes: None (draw from ``size_range``, YOLOX) or the heights to draw from
                uniformly, multiples of ``divisor`` (RT-DETR: 480, 512, ..., 640 three
                times, ..., 800); ``size_range`` is then not used.
            mode: interpolation of the images (``resize_batch``): "bilinear" (YOLOX) or
                "nearest" (RT-DETR).
        """
        if any(v % divisor for v in size_range) or size_range[0] > size_range[1]:
            raise ValueError(f"MultiScaleHook: size_range {tuple(size_range)} must be increasing "
                             f"multiples of {divisor}")
        if sizes is not None and (len(sizes) == 0 or any(int(v) % divisor or int(v) <= 0 for v in sizes)):
            raise ValueError(f"MultiScaleHook: sizes {list(sizes)} must be positive multiples of {divisor}")
        self.input_size = tuple(int(v) for v in input_size)
        self.size_range = tuple(int(v) for v in size_range)
        self.period = int(period)
        self.divisor = int(divisor)
        self.sizes = None if sizes is None else tuple(int(v) for v in sizes)
        self.mode = mode
        self.size = self.input_size

    def before_train(self):
        self.size = self.input_size
        self.trainer.data_loader = _ResizingLoader(self.trainer.data_loader, self)

    def after_step(self):
        if (self.trainer.iter + 1) % self.period == 0:
            size = self.draw() if comm.is_main_process() else None
            if comm.get_world_size() > 1:
                size = comm.all_gather(size)[0]  # rank 0's draw everywhere
            self.size = tuple(size)

    def draw(self) -> Tuple[int, int]:
        """A new training size (h, w): from ``sizes`` when given, else from ``size_range``."""
        if self.sizes is not None:
            return choose_size(self.input_size, self.sizes, self.divisor)
        return draw_size(self.input_size, self.size_range, self.divisor)

    def apply(self, batch: List[Dict]) -> List[Dict]:
        params = next(self.trainer.model.parameters(), None)
        device = params.device if params is not None else None
        return resize_batch(batch, self.size, self.input_size, device=device, mode=self.mode)
