"""Drawing sod2 ground truth and predictions with Detectron2's ``Visualizer``.

Ground truth is drawn with its ignore information: objects in their class colour,
ignored boxes of a class dashed, class-agnostic ignore regions as dashed grey boxes
labelled "ignore". Tiny objects make labels unreadable, so labels are optional.

Memory: Detectron2's ``Visualizer`` copies the image twice and shows it in its matplotlib
figure, whose rendering resamples it in floating point: about 40 times the image's bytes
(5.6 GB for an 8000 x 6000 image, with no detection drawn). sod2 draws the boxes and labels
with the same ``Visualizer`` calls on a transparent figure and blends that drawing over the
image in 8-bit strips (:class:`OverlayVisualizer`): the drawing then needs about three
times the bytes of the picture it produces (the figure's RGBA buffer and the result),
whatever the number of boxes.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
from detectron2.structures import BoxMode, Instances
from detectron2.utils.colormap import random_color
from detectron2.utils.visualizer import VisImage, Visualizer

from ..data.datasets.common import is_ignored

__all__ = ["draw_ground_truth", "draw_predictions", "side_by_side", "class_colors", "foreground_map",
           "draw_heatmap", "OverlayVisualizer"]

_STRIP_ROWS = 64  # rows blended at a time (bounds the temporaries)


class _OverlayImage(VisImage):
    """A ``VisImage`` whose figure holds only the drawing (transparent elsewhere); the image
    is blended under it by :meth:`get_image`."""

    def reset_image(self, img):
        # no imshow: only the axes' extent, as imshow would set it (x right, y down)
        self.ax.set_xlim(0, self.width)
        self.ax.set_ylim(self.height, 0)

    def get_image(self) -> np.ndarray:
        """(round(H*scale), round(W*scale), 3) uint8 RGB: the image (nearest-neighbour
        scaled, as matplotlib shows it) with the drawing blended over it by its alpha."""
        import cv2

        self.canvas.draw()
        rgba = np.asarray(self.canvas.buffer_rgba())  # (h, w, 4) uint8, straight alpha; a view
        h, w = rgba.shape[:2]
        img = self.img
        if (h, w) != img.shape[:2]:
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
        out = np.empty((h, w, 3), np.uint8)
        for y in range(0, h, _STRIP_ROWS):
            a = rgba[y:y + _STRIP_ROWS, :, 3:]
            if not a.any():
                out[y:y + _STRIP_ROWS] = img[y:y + _STRIP_ROWS]
                continue
            a = a.astype(np.uint16)
            mix = img[y:y + _STRIP_ROWS] * (255 - a) + rgba[y:y + _STRIP_ROWS, :, :3] * a + 127
            out[y:y + _STRIP_ROWS] = mix // 255
        # the figure's buffer is dropped now, not when the figure's reference cycle is collected
        self.fig.clear()
        self.canvas.renderer = None
        self.canvas._lastKey = None
        return out


class OverlayVisualizer(Visualizer):
    """Detectron2's ``Visualizer`` (same drawing calls, same look) with an image-sized
    memory footprint: the image is neither copied nor rendered by matplotlib (see the
    module docstring).

    Args:
        img_rgb: (H, W, 3) RGB image, uint8 (other types are clipped to [0, 255] and converted).
        metadata, scale: as for ``Visualizer``.
    """

    def __init__(self, img_rgb: np.ndarray, metadata=None, scale: float = 1.0):
        img = np.asarray(img_rgb)
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        # Visualizer's own attributes, on a 1 x 1 stand-in whose figure is then replaced
        super().__init__(img[:1, :1], metadata, scale=scale)
        self.img = img
        self.output = _OverlayImage(img, scale=scale)
        # Visualizer's default font size is computed from the image size: redo it for the real one
        self._default_font_size = max(np.sqrt(img.shape[0] * img.shape[1]) // 90, 10 // scale)


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
    vis = OverlayVisualizer(image_rgb, metadata, scale=scale)
    font = max(vis._default_font_size * 0.6, 6)
    for a in record.get("annotations", []):
        x0, y0, x1, y1 = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
        c = int(a["category_id"])
        ignored = is_ignored(a)
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
    vis = OverlayVisualizer(image_rgb, metadata, scale=scale)
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


def foreground_map(level_maps: Sequence[np.ndarray], strides: Sequence[int], input_hw, orig_hw) -> np.ndarray:
    """One foreground map of an image from a dense head's per-level objectness: each input
    pixel takes the highest probability of the cells (one per level) that cover it, then the
    map is cropped to the image (not the batch padding) and resized to the original size.

    Args:
        level_maps: per level (H_l, W_l) probabilities in [0, 1] (cell (i, j) covers input
            pixels [i*s, (i+1)*s) x [j*s, (j+1)*s)).
        strides: s per level.
        input_hw: (h, w) of the network input (before padding); orig_hw: (H, W) of the image.
    Returns:
        (H, W) float32 in [0, 1].
    """
    import cv2

    h, w = input_hw
    out = np.zeros((h, w), np.float32)
    for m, s in zip(level_maps, strides):
        up = np.repeat(np.repeat(np.asarray(m, np.float32), s, axis=0), s, axis=1)[:h, :w]
        out[: up.shape[0], : up.shape[1]] = np.maximum(out[: up.shape[0], : up.shape[1]], up)
    return cv2.resize(out, (orig_hw[1], orig_hw[0]), interpolation=cv2.INTER_NEAREST)


def draw_heatmap(image_rgb: np.ndarray, prob: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8 image with an (H, W) probability map in [0, 1] blended over it as a
    JET colour map (blue 0 -> red 1)."""
    import cv2

    heat = cv2.applyColorMap((np.clip(prob, 0, 1) * 255).round().astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return (image_rgb.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).round().astype(np.uint8)
