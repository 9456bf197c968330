"""Guided slicing: run a slice only where a full-image pass sees possible foreground.

Exhaustive slicing runs the detector on every slice, but large aerial frames are mostly empty
(sea, fields, roads between vehicles). Guided slicing (an option of
:class:`~sod2.inference.SlicedInference`, ``guided=GuidedSlicing(...)``) first runs the model
once on the whole image at its normal input size (the full-image pass that SAHI-style
pipelines add for large objects anyway), reads a **foreground map** from that pass, and runs
only the slices whose window, widened by ``margin`` pixels on each side, holds a map value
``>= threshold``. The full-image detections are merged with the slices' as for
``full_image=True``.

Where the map comes from (``source``):

* ``"model"``: what the detector family already computes on the full image, read from the
  module that produces it with a forward hook during the same pass (no second forward):
  the RPN objectness of R-CNN models (Detectron2's ``StandardRPNHead``; CFINet's CRPN: its
  second stage's), RetinaNet's class scores (max over classes), YOLOX's objectness (after
  Foreground Probing's refinement where the model has it), RT-DETR's encoder class scores
  (the token scores of query selection, max over classes). Each is a probability in [0, 1]
  per feature-map cell, the max over anchors/levels, on the finest level's grid.
  A model whose family is not known raises one line naming the class (use ``"detections"``).
* ``"detections"``: the generic fallback, for any model (also an exported
  :class:`~sod2.inference.OnnxModel`, whose graph outputs only detections): the full image's
  detections paint their boxes with their scores (the max where boxes overlap) on a grid of
  ``cell`` pixels. The threshold then compares with detection scores, so it is typically
  lower than a detector's score threshold (0.01-0.1).
* ``"auto"``: ``"model"`` when the family is known, else ``"detections"``.

A threshold of 0 runs every slice (the exhaustive result, plus the full-image pass); the
margin (pixels of the input image) keeps an object whose evidence lies just outside a
window (on a slice border, or found by a coarse map) from losing the slice that holds it.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

__all__ = ["GuidedSlicing", "ForegroundMap", "SliceSelection", "select_windows", "detections_map",
           "ForegroundTap", "foreground_tap", "register_tap", "maps_to_foreground", "GUIDED_SOURCES"]

GUIDED_SOURCES = ("auto", "model", "detections")


@dataclass(frozen=True)
class GuidedSlicing:
    """Settings of guided slicing (module docstring).

    Args:
        threshold: a slice runs when the foreground map reaches this value inside its widened
            window; in [0, 1]. 0 runs every slice.
        margin: pixels of the input image added on each side of a window before looking at
            the map (>= 0).
        source: "auto", "model" or "detections" (module docstring).
        cell: grid step in pixels of the map that ``"detections"`` paints (>= 1).
        size: the longest side, in pixels, of the image for the full-image pass (bilinear
            resize keeping the aspect ratio; never enlarged); None: the pass sees what the model
            normally sees, the image through the slice augmentations (the model's test-time
            resizing). A fully convolutional model given a 4000 px frame at its own resolution
            costs as much as all its slices; a reduced pass (e.g. 1024-2000 px) keeps the map
            cheap while small objects stay a few pixels wide. Such a pass only guides: its
            detections (at a scale the model was not tested at) are not merged with the
            slices' (measured: merged, they cost 16 AP on ``sod2_large_synthetic_val``), so
            threshold 0 is then exhaustive slicing without the full-image pass.
    """

    threshold: float = 0.1
    margin: int = 32
    source: str = "auto"
    cell: int = 8
    size: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.threshold, (int, float)) or isinstance(self.threshold, bool) \
                or not (0.0 <= float(self.threshold) <= 1.0):
            raise UserError(f"GuidedSlicing(threshold={self.threshold!r}): a number in [0, 1]")
        if not isinstance(self.margin, int) or isinstance(self.margin, bool) or self.margin < 0:
            raise UserError(f"GuidedSlicing(margin={self.margin!r}): an integer >= 0 (pixels)")
        if self.source not in GUIDED_SOURCES:
            raise UserError(f"GuidedSlicing(source={self.source!r}): one of {', '.join(GUIDED_SOURCES)}")
        if not isinstance(self.cell, int) or isinstance(self.cell, bool) or self.cell < 1:
            raise UserError(f"GuidedSlicing(cell={self.cell!r}): an integer >= 1 (pixels)")
        if self.size is not None and (not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 32):
            raise UserError(f"GuidedSlicing(size={self.size!r}): None or an integer >= 32 (pixels)")


@dataclass
class ForegroundMap:
    """A foreground probability per cell of a grid over the input image.

    Attributes:
        prob: (h, w) float tensor in [0, 1]; cell (i, j) covers the input pixels
            ``[j * stride_x, (j + 1) * stride_x) x [i * stride_y, (i + 1) * stride_y)``.
        stride_y, stride_x: cell size in input pixels (floats: a resized pass gives
            non-integer steps).
        source: where it came from ("rpn", "retinanet", "yolox", "rtdetr", "detections").
    """

    prob: torch.Tensor
    stride_y: float
    stride_x: float
    source: str = ""

    def window_max(self, windows: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(S,) the map's maximum over each window ``x0, y0, x1, y1`` (input pixels) widened
        by ``margin`` on each side; -inf for a window that covers no cell."""
        h, w = self.prob.shape
        prob = self.prob.detach().float().cpu().numpy()
        out = np.full(len(windows), -np.inf)
        for s, (x0, y0, x1, y1) in enumerate(np.asarray(windows, dtype=np.float64)):
            j0 = max(0, int(math.floor((x0 - margin) / self.stride_x)))
            i0 = max(0, int(math.floor((y0 - margin) / self.stride_y)))
            j1 = min(w, int(math.ceil((x1 + margin) / self.stride_x)))
            i1 = min(h, int(math.ceil((y1 + margin) / self.stride_y)))
            if j1 > j0 and i1 > i0:
                out[s] = prob[i0:i1, j0:j1].max()
        return out


@dataclass
class SliceSelection:
    """Which slices of one image ran (returned per image under ``"slicing"`` by a guided
    :class:`~sod2.inference.SlicedInference`).

    Attributes:
        windows: (S, 4) int64 all slice windows ``x0, y0, x1, y1`` (input pixels).
        ran: (S,) bool, the slices that were run.
        scores: (S,) the map's maximum in each widened window.
        foreground: the map it was decided on.
    """

    windows: np.ndarray
    ran: np.ndarray
    scores: np.ndarray
    foreground: Optional[ForegroundMap] = field(default=None, repr=False)

    @property
    def num_run(self) -> int:
        return int(self.ran.sum())


def select_windows(windows: np.ndarray, fg: Optional[ForegroundMap], threshold: float, margin: float
                   ) -> SliceSelection:
    """The slices to run: ``window_max(windows, margin) >= threshold``; every slice when
    ``threshold`` is 0 (whatever the map), none when there is no map and ``threshold > 0``."""
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    if fg is None:
        scores = np.full(len(windows), -np.inf)
    else:
        scores = fg.window_max(windows, margin)
    ran = np.ones(len(windows), bool) if threshold <= 0 else scores >= threshold
    return SliceSelection(windows, ran, scores, fg)


def detections_map(boxes: torch.Tensor, scores: torch.Tensor, height: int, width: int, cell: int) -> ForegroundMap:
    """The generic map: each box (N, 4) XYXY in input pixels paints the cells it touches with
    its score (N,), the max where boxes overlap; cells of ``cell`` pixels over a
    ``height`` x ``width`` image. Non-finite boxes or scores are refused (ValueError)."""
    h, w = max(1, math.ceil(height / cell)), max(1, math.ceil(width / cell))
    prob = torch.zeros(h, w)
    boxes = boxes.detach().float().cpu().reshape(-1, 4)
    scores = scores.detach().float().cpu().reshape(-1)
    if not (torch.isfinite(boxes).all() and torch.isfinite(scores).all()):
        raise ValueError("guided slicing: the full-image pass gave non-finite boxes or scores")
    for (x0, y0, x1, y1), s in zip(boxes.tolist(), scores.tolist()):
        j0, i0 = max(0, int(x0 // cell)), max(0, int(y0 // cell))
        j1, i1 = min(w, int(math.ceil(x1 / cell))), min(h, int(math.ceil(y1 / cell)))
        j1, i1 = max(j1, min(w, j0 + 1)), max(i1, min(h, i0 + 1))
        if j1 > j0 and i1 > i0:
            prob[i0:i1, j0:j1].clamp_(min=s)
    return ForegroundMap(prob, float(cell), float(cell), "detections")


# ----------------------------------------------------------------------------------- taps
@dataclass
class ForegroundTap:
    """Where a detector family's full-image foreground evidence is read, during the normal
    full-image pass (no second forward).

    Attributes:
        name: the family ("rpn", "crpn", "retinanet", "yolox", "rtdetr").
        hooks: submodules whose forward outputs are captured (forward hooks), by name.
        levels: ``(captured {name: [output of each call]}, the model's output dict of the image) -> (maps,
            strides)``: per level an (h_l, w_l) probability map in [0, 1] of the (only) image
            of the pass, and each level's cell size in pixels of the model's padded input.
        options: attributes of the model set for the pass and restored after (YOLOX's
            ``return_visuals``: its refined objectness comes back as the output's "visuals").
    """

    name: str
    hooks: Dict[str, nn.Module]
    levels: Callable[[Dict[str, Any], Dict[str, Any]], Tuple[List[torch.Tensor], List[float]]]
    options: Dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def capturing(self, model: nn.Module):
        """Within the block the hooks record into the yielded dict and ``options`` are set."""
        captured: Dict[str, Any] = {}
        handles = [m.register_forward_hook(lambda mod, args, out, n=n: captured.setdefault(n, []).append(out))
                   for n, m in self.hooks.items()]
        saved = {k: getattr(model, k) for k in self.options}
        try:
            for k, v in self.options.items():
                setattr(model, k, v)
            yield captured
        finally:
            for k, v in saved.items():
                setattr(model, k, v)
            for h in handles:
                h.remove()


def _max_sigmoid(logits: List[torch.Tensor]) -> List[torch.Tensor]:
    # per level (1, A[*K], h, w) logits -> (h, w): the max over anchors (and classes) of the probability
    return [torch.sigmoid(x[0].float()).amax(dim=0) for x in logits]


def _strides(model, features) -> List[float]:
    shapes = model.backbone.output_shape()
    return [float(shapes[f].stride) for f in features]


_TAP_BUILDERS: List[Callable[[nn.Module], Optional[ForegroundTap]]] = []


def register_tap(builder: Callable[[nn.Module], Optional[ForegroundTap]]):
    """Add a family: ``builder(detector) -> ForegroundTap or None`` (None: not this family).
    Builders are tried in registration order; sod2's families are registered below."""
    _TAP_BUILDERS.append(builder)
    return builder


@register_tap
def _rcnn_tap(model):
    # Detectron2's RPN: StandardRPNHead returns (objectness [(N, A, h, w)], deltas)
    from detectron2.modeling.proposal_generator import RPN

    gen = getattr(model, "proposal_generator", None) if hasattr(model, "roi_heads") else None
    if isinstance(gen, RPN):
        strides = _strides(model, gen.in_features)
        return ForegroundTap("rpn", {"head": gen.rpn_head}, lambda cap, out: (_max_sigmoid(cap["head"][-1][0]), strides))
    return None


@register_tap
def _crpn_tap(model):
    # CFINet's CRPN: its second stage's objectness, one call of head.s2_cls per level ((1, 1, h, w))
    from ..modeling.methods.cfinet.crpn import CRPN

    gen = getattr(model, "proposal_generator", None) if hasattr(model, "roi_heads") else None
    if isinstance(gen, CRPN):
        strides = [float(s) for s in gen.anchor_generator.strides]
        return ForegroundTap("crpn", {"s2_cls": gen.head.s2_cls},
                             lambda cap, out: (_max_sigmoid(cap["s2_cls"][-len(strides):]), strides))
    return None


@register_tap
def _retinanet_tap(model):
    # Detectron2's RetinaNetHead returns (logits [(N, A*K, h, w)], deltas)
    from detectron2.modeling.meta_arch.retinanet import RetinaNet

    if isinstance(model, RetinaNet):
        strides = _strides(model, model.head_in_features)
        return ForegroundTap("retinanet", {"head": model.head},
                             lambda cap, out: (_max_sigmoid(cap["head"][-1][0]), strides))
    return None


@register_tap
def _yolox_tap(model):
    # YOLOX returns its objectness after inference_objectness (Foreground Probing's refinement
    # where the model has it) as "visuals" (a ForegroundMaps) when asked
    from ..modeling.meta_arch.yolox import YOLOX

    if isinstance(model, YOLOX):
        def levels(cap, out):
            v = out["visuals"]
            return v.level_maps("after"), [float(s) for s in v.strides]
        return ForegroundTap("yolox", {}, levels, {"return_visuals": True})
    return None


@register_tap
def _rtdetr_tap(model):
    # RT-DETR: the encoder's class logits of every token (query selection's enc_score_head,
    # (1, S, K)) over the encoder's levels ((1, D, h_l, w_l), low stride first)
    from ..modeling.meta_arch.rtdetr import RTDETR

    if isinstance(model, RTDETR):
        strides = [float(s) for s in model.encoder.feat_strides]

        def levels(cap, out):
            prob = torch.sigmoid(cap["scores"][-1][0].float()).amax(dim=-1)  # (S,)
            maps, start = [], 0
            for f in cap["encoder"][-1]:
                h, w = f.shape[-2:]
                maps.append(prob[start:start + h * w].view(h, w))
                start += h * w
            return maps, strides
        return ForegroundTap("rtdetr", {"encoder": model.encoder, "scores": model.decoder.query_selection.enc_score_head},
                             levels)
    return None


def foreground_tap(model: nn.Module) -> Optional[ForegroundTap]:
    """The :class:`ForegroundTap` of ``model``'s family, or None when no registered family
    matches."""
    for builder in _TAP_BUILDERS:
        tap = builder(model)
        if tap is not None:
            return tap
    return None


def maps_to_foreground(maps: List[torch.Tensor], strides: List[float], valid_hw: Tuple[int, int],
                       image_hw: Tuple[int, int], source: str) -> ForegroundMap:
    """One image's levels (each (h_l, w_l), cells of ``strides[l]`` model-input pixels) -> a
    :class:`ForegroundMap` over the input image of ``image_hw``: every level's cell repeated
    ``strides[l] / finest stride`` times along each axis (so a coarse cell covers exactly the
    fine cells of its pixels, also when a level's size was rounded up: P6/P7 of a padded
    input), cropped or zero-padded to the finest grid, the max over levels, cropped to the
    cells that cover the valid (unpadded) model input ``valid_hw``, with the cell size
    rescaled from model-input pixels to image pixels (``image_hw / valid_hw``)."""
    k = min(range(len(maps)), key=lambda i: strides[i])
    h, w = maps[k].shape[-2:]
    levels = []
    for m, st in zip(maps, strides):
        f = max(1, int(round(st / strides[k])))
        up = m.float().repeat_interleave(f, 0).repeat_interleave(f, 1)[:h, :w]
        levels.append(F.pad(up, (0, w - up.shape[1], 0, h - up.shape[0])))
    prob = torch.stack(levels).amax(0)
    stride = strides[k]
    hv, wv = min(h, max(1, math.ceil(valid_hw[0] / stride))), min(w, max(1, math.ceil(valid_hw[1] / stride)))
    ry, rx = image_hw[0] / valid_hw[0], image_hw[1] / valid_hw[1]
    return ForegroundMap(prob[:hv, :wv].clamp(0, 1), stride * ry, stride * rx, source)
