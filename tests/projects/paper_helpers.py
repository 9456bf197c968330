"""Helpers of tests/projects/test_paper_numbers_*.py: where two LazyConfig files differ (a
method config and its plain twin, the paper's baseline row) and a small training batch."""

import torch
from detectron2.structures import Boxes, Instances

from sod2.config import config_difference, get_config  # noqa: F401  (re-exported for the paper tests)


def training_batch(num_images: int, size, num_boxes: int, num_classes: int, min_side: float = 8.0,
                   extra: float = 12.0, seed: int = 0):
    """Detectron2 training inputs: ``num_images`` random uint8 images of ``size`` = (H, W), each
    with ``num_boxes`` boxes of sides in [min_side, min_side + extra) inside the image and random
    classes in [0, num_classes)."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_images):
        xy = torch.rand(num_boxes, 2, generator=g) * (min(h, w) - min_side - extra)
        wh = min_side + torch.rand(num_boxes, 2, generator=g) * extra
        inst = Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                         gt_classes=torch.randint(0, num_classes, (num_boxes,), generator=g))
        out.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                    "height": h, "width": w, "instances": inst})
    return out
