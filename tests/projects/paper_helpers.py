"""Helpers of tests/projects/test_paper_numbers_*.py: where two LazyConfig files differ (a
method config and its plain twin, the paper's baseline row) and a small training batch."""
from functools import partial

import torch
from detectron2.structures import Boxes, Instances
from omegaconf import OmegaConf

from sod2.config import get_config


def _diff(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            out += [key] if (k in a) != (k in b) else _diff(a[k], b[k], key)
        return out
    if isinstance(a, partial) and isinstance(b, partial):  # equal only by identity
        return _diff([a.func, list(a.args), a.keywords], [b.func, list(b.args), b.keywords], prefix)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [k for i, (x, y) in enumerate(zip(a, b)) for k in _diff(x, y, f"{prefix}[{i}]")]
    return [] if a == b else [prefix]


def config_difference(path_a: str, path_b: str, sections=("model", "optimizer", "lr_multiplier", "dataloader",
                                                               "train")):
    """The dotted keys (unresolved values) in which two config files (paths relative to
    configs/) differ, over ``sections``; ``train.output_dir`` is left out."""
    a, b = get_config(path_a), get_config(path_b)
    keys = []
    for s in sections:
        keys += _diff(OmegaConf.to_container(a[s], resolve=False), OmegaConf.to_container(b[s], resolve=False), s)
    return sorted(k for k in keys if k != "train.output_dir")


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
