"""Drawing sod2 ground truth and predictions with Detectron2's ``Visualizer``.

Ground truth is drawn with its ignore information: objects in their class colour,
ignored boxes of a class dashed, class-agnostic ignore regions as dashed grey boxes
labelled "ignore". Tiny objects make labels unreadable, so labels are optional.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from detectron2.structures import BoxMode, Instances
from detectron2.utils.colormap import random_color
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_ground_truth", "draw_predictions", "side_by_side", "class_colors"]


def class_colors(num_classes: int):
    """A fixed colour (RGB in [0, 1]) per class, shared by predictions and ground truth."""
    rng_state = np.random.get_state()
    np.random.seed(7)
    cols = [random_color(rgb=True, maximum=1) for _ in range(num_classes)]
    np.random.set_state(rng_state)
    return cols


def draw_ground_truth(image_rgb: np.ndarray, record: Dict, metadata, scale: float = 1.0,
                      labels: bool = True) -> np.ndarray:
    """Draw a dataset dict's annotations.

    Args:
        image_rgb: (H, W, 3) uint8 RGB image of ``record``.
        record: dataset dict in sod2 conventions.
        metadata: Detectron2 metadata with ``thing_classes``.
    Returns:
        (H*scale, W*scale, 3) uint8 RGB drawing.
    """
    names = list(metadata.thing_classes)
    colors = class_colors(len(names))
    vis = Visualizer(image_rgb, metadata, scale=scale)
    font = max(vis._default_font_size * 0.6, 6)
    for a in record.get("annotations", []):
        x0, y0, x1, y1 = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
        c = int(a["category_id"])
        ignored = bool(a.get("ignore", 0) or a.get("iscrowd", 0))
        color = (0.6, 0.6, 0.6) if c < 0 else colors[c]
        vis.draw_box((x0, y0, x1, y1), edge_color=color, alpha=0.9,
                     line_style="--" if ignored else "-")
        if labels:
            text = "ignore" if c < 0 else names[c] + (" (ignored)" if ignored else "")
            vis.draw_text(text, (x0, y0), color=color, horizontal_alignment="left", font_size=font)
    return vis.get_output().get_image()


def draw_predictions(image_rgb: np.ndarray, instances: Instances, metadata, scale: float = 1.0,
                     score_thresh: float = 0.3, labels: bool = True) -> np.ndarray:
    """Draw predicted boxes (``pred_boxes``, ``scores``, ``pred_classes``) above a score."""
    names = list(metadata.thing_classes)
    colors = class_colors(len(names))
    inst = instances.to("cpu")
    inst = inst[inst.scores >= score_thresh]
    vis = Visualizer(image_rgb, metadata, scale=scale)
    font = max(vis._default_font_size * 0.6, 6)
    for box, score, c in zip(inst.pred_boxes.tensor.numpy(), inst.scores.numpy(),
                             inst.pred_classes.numpy()):
        vis.draw_box(tuple(box), edge_color=colors[c], alpha=0.9)
        if labels:
            vis.draw_text(f"{names[c]} {score:.2f}", (box[0], box[1]), color=colors[c],
                          horizontal_alignment="left", font_size=font)
    return vis.get_output().get_image()


def side_by_side(images: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
    """Concatenate RGB images horizontally (padded to the same height) with a white gap."""
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        pad = np.full((h, im.shape[1], 3), 255, np.uint8)
        pad[:im.shape[0]] = im
        parts.append(pad)
        if i + 1 < len(images):
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)
