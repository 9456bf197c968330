"""A test-time mapper wrapper that paints class-agnostic ignore regions, as
``tools/split_images.py`` paints them into pre-split test patches (SODA-D's protocol), so
that on-the-fly slicing of whole images sees the same pixels as the pre-split files."""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np
import torch

from ..data.datasets.common import is_ignore_region
from ..data.mapper import fill_ignore_regions

__all__ = ["FillIgnoreMapper"]


class FillIgnoreMapper:
    """``mapper(dataset_dict)``, then ignore regions (:func:`~sod2.data.datasets.common.is_ignore_region`)
    of ``dataset_dict["annotations"]`` painted with ``fill`` (except where an object box lies).

    The wrapped mapper must leave the image at its size (no resizing: with slicing, the
    resizing is applied to each slice)."""

    def __init__(self, mapper: Callable[[Dict], Dict], fill: Sequence[float] = (0, 0, 0)):
        self.mapper = mapper
        self.fill = [float(v) for v in fill]

    def __call__(self, dataset_dict: Dict) -> Dict:
        out = self.mapper(dataset_dict)
        annos = dataset_dict.get("annotations") or []
        if not any(is_ignore_region(a) for a in annos):
            return out
        image = out["image"]  # (C, H, W)
        if tuple(image.shape[1:]) != (int(dataset_dict["height"]), int(dataset_dict["width"])):
            raise ValueError(f"{dataset_dict.get('file_name')}: FillIgnoreMapper needs the image at its size "
                             f"({dataset_dict['width']}x{dataset_dict['height']}), the mapper made it "
                             f"{image.shape[2]}x{image.shape[1]}")
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        out["image"] = torch.as_tensor(np.ascontiguousarray(
            fill_ignore_regions(hwc, annos, self.fill).transpose(2, 0, 1)))
        return out
