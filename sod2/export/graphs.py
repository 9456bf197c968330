"""
Graph wrappers: the part of a sod2 detector that goes into an exported graph.

Each wrapper is an ``nn.Module`` taking ``images`` float32 (B, 3, H, W), the images as the
config's test mapper gives them (the model's channel order, 0-255, resized, not normalised,
not padded), and returning ``boxes`` (M, 4) XYXY in input-image pixels, ``scores`` (M,),
``classes`` (M,) int64 and ``batch_index`` (M,) int64, flat over the batch, each image's
detections by decreasing score, images in batch order (sod2/export/metadata.py).

They call the models' own modules and methods (backbone, head, ``YOLOX.decode`` and
``YOLOX.inference_objectness``, RT-DETR's decoder) and re-write only the steps that loop over
a Python list of images in eager mode (padding through ``ImageList``, per-image post-processing),
as batched tensor code that the dynamo exporter can trace with symbolic H, W and B. What stays
outside (the rescale to the original image, clipping, YOLOX's resize ratio) is
:func:`sod2.export.postprocess.to_original`.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import nms

from ..modeling.meta_arch.yolox import YOLOXStep

__all__ = ["YOLOXGraph", "RTDETRGraph", "graph_for", "family_of"]


def _pad_to(x: Tensor, divisibility: int, square: int = 0, value: float = 0.0) -> Tensor:
    """Pad (B, C, H, W) at the bottom/right as Detectron2's ``ImageList.from_tensors``: to the
    square ``square`` x ``square`` when > 0, then up to a multiple of ``divisibility``."""
    h, w = x.shape[-2], x.shape[-1]
    if square > 0:
        h = w = square
    if divisibility > 1:
        h = (h + divisibility - 1) // divisibility * divisibility
        w = (w + divisibility - 1) // divisibility * divisibility
    return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), value=value)


def _rank_in_image(batch_index: Tensor, batch: int) -> Tensor:
    """(M,) position of each detection among those of its image (detections grouped by image,
    in order)."""
    onehot = (batch_index[:, None] == torch.arange(batch, device=batch_index.device)[None]).to(torch.int64)
    return (onehot.cumsum(0) * onehot).sum(1) - 1


class YOLOXGraph(nn.Module):
    """YOLOX (or a subclass such as ``FGProbeYOLOX``, whose STSM + FRM run at inference, so they
    are in the graph) from images to detections: pad with ``pad_value`` (the square test
    letterbox and the backbone's divisibility), normalise, backbone, head, ``decode``, the
    model's ``inference_objectness`` hook, then the score ``obj * max class prob`` >= ``test_score_thresh`` with finite boxes,
    class-aware NMS (the coordinate trick of torchvision's ``batched_nms`` with one offset per
    (image, class): ONNX ``NonMaxSuppression``) and ``max_detections_per_image`` per image."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            images: (B, 3, H, W) float32, 0-255, the config's test-mapper images (unnormalised,
                unpadded; channel order as the model's ``input_format``).
        Returns:
            boxes (M, 4) XYXY in input-image pixels, scores (M,), classes (M,) int64,
            batch_index (M,) int64 in [0, B): all images' detections, by image, then by
            decreasing score.
        """
        m = self.model
        constraints = dict(m.backbone.padding_constraints or {})
        x = _pad_to(images.to(m.pixel_mean.dtype), constraints.get("size_divisibility", m.backbone.size_divisibility),
                    constraints.get("square_size", 0), float(m.pad_value))
        x = (x - m.pixel_mean) / m.pixel_std
        features = m.backbone(x)
        features = [features[f] for f in m.head_in_features]
        head = m.head(features)
        preds = m.decode(head.cls_logits, head.reg, head.obj_logits)
        # every image of the batch has the input's (H, W) (one tensor: one size), computed from
        # its shape so that a --dynamic export keeps it symbolic
        ones = images.new_ones(images.shape[0], 1)
        hw = torch.cat([ones * images.shape[-2], ones * images.shape[-1]], dim=1)  # (B, 2)
        step = YOLOXStep(preds, head=head, image_sizes=hw)
        # the model's own hook: plain YOLOX's objectness, or the refined one of a method's
        # subclass (Foreground Probing: STSM + FRM run at inference, so they are in the graph)
        obj_logits = m.inference_objectness(step)
        # m.inference, batched
        B, A, C = preds.cls_logits.shape
        class_conf, classes = preds.cls_logits.sigmoid().max(dim=2)
        scores = obj_logits.sigmoid() * class_conf  # (B, A)
        keep = (scores >= m.test_score_thresh) & torch.isfinite(preds.boxes).all(dim=2)
        batch_index = torch.arange(B, device=images.device)[:, None].expand(B, A)[keep]
        boxes, scores, classes = preds.boxes[keep], scores[keep], classes[keep]
        group = batch_index if m.class_agnostic_nms else batch_index * C + classes
        # torchvision's batched_nms coordinate trick (for one image: its exact offsets)
        top = torch.cat([boxes.flatten(), boxes.new_full((1,), float("-inf"))]).max()
        order = nms(boxes + (group.to(boxes) * (top + torch.ones_like(top)))[:, None], scores, m.test_nms_thresh)
        # nms orders by score over the batch; group by image, keeping the score order (stable)
        order = order[torch.sort(batch_index[order], stable=True).indices]
        if m.max_detections_per_image is not None:  # None: no cap (the official YOLOX COCO configs)
            order = order[_rank_in_image(batch_index[order], B) < m.max_detections_per_image]
        return boxes[order], scores[order], classes[order], batch_index[order]


class RTDETRGraph(nn.Module):
    """RT-DETR from images to its top-K: channel flip (BGR input), normalise, pad with 0 to
    ``size_divisibility``, backbone, encoder, decoder (eval layer; Better Sampling has no
    inference-time part, so its graph is the plain RT-DETR's), sigmoid, top-K over queries x
    classes; boxes XYXY in input pixels (normalised coordinates x the padded size); detections
    with non-finite boxes or scores dropped (``RTDETR.inference``).

    With a dynamic height/width the encoder's position embedding and the query selection's
    anchors are computed in the graph from the feature shapes (the functions that precompute
    them for ``eval_spatial_size``); with a fixed size they are the precomputed buffers.
    ``min_input_size``: the smallest height and width whose padded feature maps have at
    least ``num_queries`` tokens (the query selection's top-K), the lower bound of a dynamic
    export's H and W axes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        strides = model.encoder.feat_strides
        div = max(int(model.size_divisibility), max(strides))
        queries = int(model.decoder.query_selection.num_queries)
        n = div  # square padded size n: sum over levels of (n / s) ** 2 tokens
        while sum((n // s) ** 2 for s in strides) < queries:
            n += div
        self.min_input_size = n - div + 1  # every side in (n - div, n] pads to n

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """
        Args:
            images: (B, 3, H, W) float32, 0-255, the config's test-mapper images (unnormalised,
                unpadded; channel order as the model's ``input_format``).
        Returns:
            boxes (M, 4) XYXY in input-image pixels, scores (M,), classes (M,) int64,
            batch_index (M,) int64 in [0, B): all images' detections, by image, then by
            decreasing score.
        """
        m = self.model
        x = images.to(m.pixel_mean.dtype)
        if m.input_format == "BGR":
            x = x.flip(1)
        x = _pad_to((x - m.pixel_mean) / m.pixel_std, m.size_divisibility, 0, 0.0)
        hp, wp = x.shape[-2], x.shape[-1]
        outputs = m.decoder(m.encoder(m.backbone(x)), None)
        layer = outputs.layers[-1]
        num_dn = int(outputs.num_denoising)
        logits, boxes = layer.logits[:, num_dn:], layer.boxes[:, num_dn:]
        scores, labels, xyxy = m.top_k(logits, boxes)
        B, k = scores.shape
        # x the padded size per axis (a Python int, or symbolic under a dynamic-size export)
        x0, y0, x1, y1 = xyxy.unbind(2)
        xyxy = torch.stack([x0 * wp, y0 * hp, x1 * wp, y1 * hp], dim=2)
        finite = torch.isfinite(xyxy).all(dim=2) & torch.isfinite(scores)
        batch_index = torch.arange(B, device=images.device)[:, None].expand(B, k)
        return xyxy[finite], scores[finite], labels[finite], batch_index[finite]


def family_of(model: nn.Module) -> str:
    """"yolox" / "rtdetr" / "retinanet" / "rcnn" by the meta-architecture, else UserError.

    "rcnn" covers Detectron2's GeneralizedRCNN and its sod2 subclasses (Faster and Cascade
    R-CNN, SR-TOD, CFINet with CRPN); "retinanet" Detectron2's RetinaNet and its subclasses
    (SR-TOD RetinaNet). Their graphs are in :mod:`sod2.export.rcnn`.
    """
    from detectron2.modeling import GeneralizedRCNN, RetinaNet

    from ..errors import UserError
    from ..modeling.meta_arch.rtdetr import RTDETR
    from ..modeling.meta_arch.yolox import YOLOX

    if isinstance(model, YOLOX):
        return "yolox"
    if isinstance(model, RTDETR):
        return "rtdetr"
    if isinstance(model, RetinaNet):
        return "retinanet"
    if isinstance(model, GeneralizedRCNN):
        return "rcnn"
    raise UserError(f"export: {type(model).__name__} cannot be exported (supported: YOLOX, RTDETR, "
                    "GeneralizedRCNN and RetinaNet with their sod2 subclasses)")


def graph_for(model: nn.Module) -> nn.Module:
    """The graph wrapper of ``model`` (in eval mode); UserError for a part the graphs do not cover."""
    from ..errors import UserError
    from .rcnn import build_rcnn_export_module

    family = family_of(model)
    if family in ("rcnn", "retinanet"):
        try:
            return build_rcnn_export_module(model.eval())
        except TypeError as e:
            raise UserError(f"export: {e}") from None
    return {"yolox": YOLOXGraph, "rtdetr": RTDETRGraph}[family](model.eval())
