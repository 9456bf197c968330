"""
The Python part of an exported detector (the export contract): from the graph's flat outputs
in input-image pixels to one :class:`Instances` per image in its original size, exactly as the
PyTorch model maps its detections (``YOLOX.map_to_original``, ``RTDETR.inference``,
Detectron2's ``detector_postprocess``).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from ..errors import UserError

__all__ = ["to_original"]


def _tensor(x, dtype) -> torch.Tensor:
    return (x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))).to(dtype)


def to_original(boxes, scores, classes, batch_index, inputs: Sequence[Dict], input_size: Tuple[int, int], *,
                family: str, clip_boxes: bool, max_detections_per_image: Optional[int] = None) -> List[Instances]:
    """Split the graph's outputs by image and map them to each image's original size.

    Args:
        boxes: (M, 4) XYXY in the pixels of the graph's input (the resized, unpadded image);
            scores (M,); classes (M,); batch_index (M,) in [0, B) (numpy arrays or tensors).
        inputs: the B dataset dicts given to the runtime: "height"/"width" (the original size,
            default the input size) and, for YOLOX's official test resize, "resize_ratio".
        input_size: (h, w) of the graph's input images (one size per batch).
        family: "yolox": ``YOLOX.map_to_original`` (boxes / resize_ratio as a float32 divisor
            when given, else Detectron2's per-axis rescale; clipped and empty boxes dropped when
            ``clip_boxes``); "rtdetr": per-axis rescale by ``W / w``, ``H / h`` (clipped, none
            dropped, when ``clip_boxes``); any other family: ``detector_postprocess`` (rescale,
            clip, empty boxes dropped).
        max_detections_per_image: keep at most this many per image (the graph caps already;
            a second cap is harmless).
    Returns:
        B Instances of size (height, width) with pred_boxes, scores, pred_classes (int64), in the
        graph's order (by decreasing score).
    """
    boxes, scores = _tensor(boxes, torch.float32), _tensor(scores, torch.float32)
    classes, batch_index = _tensor(classes, torch.int64), _tensor(batch_index, torch.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not (len(scores) == len(classes) == len(batch_index) == len(boxes)):
        raise UserError(f"export outputs: boxes must be (M, 4) with M scores, classes and batch indices, got "
                        f"{tuple(boxes.shape)}, {tuple(scores.shape)}, {tuple(classes.shape)}, {tuple(batch_index.shape)}")
    if len(batch_index) and (int(batch_index.min()) < 0 or int(batch_index.max()) >= len(inputs)):
        raise UserError(f"export outputs: batch_index outside [0, {len(inputs)})")
    h, w = int(input_size[0]), int(input_size[1])
    results = []
    for i, x in enumerate(inputs):
        sel = batch_index == i
        if max_detections_per_image is not None:
            sel = sel & (torch.cumsum(sel.to(torch.int64), 0) <= max_detections_per_image)
        r = Instances((h, w), pred_boxes=Boxes(boxes[sel]), scores=scores[sel], pred_classes=classes[sel])
        H, W = x.get("height", h), x.get("width", w)
        if family == "yolox":
            results.append(_yolox_to_original(r, H, W, x.get("resize_ratio"), clip_boxes))
        elif family == "rtdetr":
            b = r.pred_boxes.tensor * torch.tensor([W / w, H / h, W / w, H / h], dtype=torch.float32)
            out = Instances((int(H), int(W)), pred_boxes=Boxes(b), scores=r.scores, pred_classes=r.pred_classes)
            if clip_boxes:
                out.pred_boxes.clip((int(H), int(W)))
            results.append(out)
        else:
            results.append(detector_postprocess(r, H, W))
    return results


def _yolox_to_original(r: Instances, H: int, W: int, ratio, clip: bool) -> Instances:
    """``YOLOX.map_to_original`` on graph outputs (the same operations, so the same floats)."""
    h, w = r.image_size
    if ratio is None and clip:
        return detector_postprocess(r, H, W)
    b = r.pred_boxes.tensor
    if ratio is not None:
        ratio = float(ratio)
        if not (math.isfinite(ratio) and ratio > 0):
            raise UserError(f"export: resize_ratio must be a positive finite number, got {ratio}")
        b = b / torch.tensor(ratio, dtype=b.dtype)
    else:
        b = b * b.new_tensor([W / w, H / h, W / w, H / h])
    out = Instances((int(H), int(W)), scores=r.scores, pred_classes=r.pred_classes)
    out.pred_boxes = Boxes(b)
    if clip:
        out.pred_boxes.clip(out.image_size)
        out = out[out.pred_boxes.nonempty()]
    return out
