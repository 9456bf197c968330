"""``SlicedInference``: any Detectron2 detector on images much larger than its input.

Each image is cut into overlapping slices (:mod:`.slicing`), the slices are run through the
wrapped model in batches, an optional full-image pass is added, and the detections are
mapped back to image coordinates and merged (:func:`.merge.merge_detections`: NMS or
GREEDYNMM, IoU or IoS, class-wise or class-agnostic, a per-image limit).

The wrapper is an ``nn.Module`` with the model's calling convention (``model(list of
dicts) -> list of {"instances": Instances}``), so ``inference_on_dataset``, the evaluators
and the demo use it unchanged. Its interface, and all of it:

* ``forward``: sliced inference; in training mode it is the wrapped model's forward (the
  wrapper starts in the wrapped model's mode; ``train()``/``eval()`` set both);
* ``state_dict`` / ``load_state_dict``: the wrapped model's, so checkpoints load into either;
* ``model``: the wrapped model, and :meth:`SlicedInference.detector` (``m.model`` for a
  wrapper, ``m`` for anything else), which is how code that needs the detector's own
  methods (the no-aug tail's ``set_l1_loss``) reaches it;
* ``device``: where the wrapped model's tensors are;
* the slicing settings (``slice_h``, ``stride_y``, ``merge``, ``enabled``, ``guided``, ...),
  ``windows`` and ``resolved_batch_size``.

Guided slicing (``guided=GuidedSlicing(threshold, margin, source)``, :mod:`.guided`) runs the
full-image pass first, reads a foreground map from it and runs only the slices where the map
may hold an object; each output then also carries ``"slicing"``, a
:class:`~sod2.inference.guided.SliceSelection` (all windows, which ran, the map).

Stages are labelled for ``torch.profiler`` (``record_function``; free when no profiler runs):
``sod2.sliced.prepare`` (cutting and the slice augmentations), ``sod2.sliced.forward`` (the
model's calls), ``sod2.sliced.convert`` (detections to image coordinates, on the CPU) and
``sod2.sliced.merge``; ``tools/benchmark_sliced.py`` reports the time of each.

Nothing else is forwarded: the wrapped model's other attributes are read and set on
``m.model`` (``SlicedInference.detector(m)``), never through the wrapper.
"""
from __future__ import annotations

import itertools
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .guided import GuidedSlicing, detections_map, foreground_tap, maps_to_foreground, select_windows
from .merge import MATCH_METRICS, MERGE_METHODS, merge_detections
from .slicing import slice_pair, slice_strides, slice_windows

logger = logging.getLogger(__name__)

__all__ = ["SlicedInference", "above", "check_slicing_args", "MANY_SLICES"]

# an image cut into more slices than this is warned about, with the count, before its first
# model call: 4225 slices (--slice 128 --overlap 0.99 on 256 px) took 9 minutes on 2 CPU
# cores; ordinary settings stay far below (an 8000 x 6000 image in 800 px slices, overlap 0.2:
# 130 slices; 20000 x 20000: 961)
MANY_SLICES = 1000


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _pair_or_one(value, ok) -> bool:
    """``ok`` holds for a scalar ``value``, or for both items of a 2-item sequence."""
    if ok(value):
        return True
    try:
        items = list(value) if not isinstance(value, (str, bytes)) else None
    except TypeError:
        return False
    return items is not None and len(items) == 2 and all(ok(v) for v in items)


def check_slicing_args(name=lambda arg, value: f"{arg}={value!r}", slice_size=800, overlap=0.2,
                       stride=None, batch_size=None, full_image=False, merge="nms", match_metric="iou",
                       match_threshold=0.5, class_agnostic=False, max_detections=None, pad_value=None,
                       enabled=True) -> None:
    """Check every setting of :class:`SlicedInference` (its argument names); raise one
    :class:`~sod2.errors.UserError` line naming the first bad one and what it may be.

    Args:
        name: ``name(argument, value)`` -> how the message names the setting (a config
            key such as ``slicing.size=0`` or ``model.match_threshold=nan``).
    """
    def bad(arg, value, allowed):
        raise UserError(f"{name(arg, value)}: must be {allowed}")

    positive = "a positive integer or a (height, width) pair of positive integers"
    if not _pair_or_one(slice_size, lambda v: _is_int(v) and v > 0):
        bad("slice_size", slice_size, positive + " (pixels)")
    if stride is not None:
        if not _pair_or_one(stride, lambda v: _is_int(v) and v > 0):
            bad("stride", stride, positive + " (pixels), or None to use overlap")
        (sh, sw), (ty, tx) = slice_pair(slice_size, "slice size"), slice_pair(stride, "slice stride")
        if ty > sh or tx > sw:
            bad("stride", stride, f"at most the slice size {slice_size!r} (bands between slices would "
                                  "be in no slice)")
    if (overlap is not None or stride is None) and \
            not _pair_or_one(overlap, lambda v: _is_number(v) and 0.0 <= float(v) < 1.0):
        bad("overlap", overlap, "a number in [0, 1) (the fraction of a slice shared with its neighbour), "
                                "or a (y, x) pair of them" + ("" if stride is None else "; a stride replaces it"))
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        bad("batch_size", batch_size, "a positive integer, or None for the device's default")
    for arg, value in (("full_image", full_image), ("class_agnostic", class_agnostic), ("enabled", enabled)):
        if not isinstance(value, (bool, np.bool_)):
            bad(arg, value, "True or False")
    if merge not in MERGE_METHODS:
        bad("merge", merge, f"one of {', '.join(MERGE_METHODS)}")
    if match_metric not in MATCH_METRICS:
        bad("match_metric", match_metric, f"one of {', '.join(MATCH_METRICS)}")
    if not (_is_number(match_threshold) and 0.0 < float(match_threshold) <= 1.0):
        bad("match_threshold", match_threshold, "a number in (0, 1]")
    if max_detections is not None and not (_is_int(max_detections) and max_detections >= 1):
        bad("max_detections", max_detections, "a positive integer, or None for no limit")
    if pad_value is not None and not (_is_number(pad_value) and np.isfinite(float(pad_value))):
        bad("pad_value", pad_value, "a finite number, or None for no padding")


def above(threshold: float) -> float:
    """The smallest float64 above ``threshold``: ``metric >= above(t)`` is ``metric > t``
    (Detectron2's NMS suppresses above its threshold, SAHI matches at or above)."""
    return float(np.nextafter(float(threshold), np.inf))


# slices per model call when ``batch_size`` is None: one on the CPU, where batching measured
# slower (tools/benchmark.py sliced: 30 slices of 800 px, YOLOX-Tiny P2, 2 cores: batch 4 takes
# 1.13-1.28x the time of batch 1); on an accelerator batching fills the device ([ours], not
# measured for want of one)
CPU_BATCH_SIZE = 1
DEVICE_BATCH_SIZE = 4


def _longest_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) ``image`` resized (bilinear, Detectron2's ResizeTransform) so that its longer
    side is ``size``; returned as it is when that side is not longer."""
    from detectron2.data import transforms as T

    h, w = image.shape[1:]
    scale = size / max(h, w)
    if scale >= 1:
        return image
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    arr = T.ResizeTransform(h, w, nh, nw).apply_image(np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy()))
    return torch.as_tensor(np.ascontiguousarray(arr.transpose(2, 0, 1)))


class SlicedInference(nn.Module):
    """Run ``model`` on overlapping slices of each image and merge the detections.

    Input: the wrapped model's, a list of dicts with ``image`` (C, H', W') tensor in the
    model's input format and optional ``height``, ``width`` (the output resolution, default
    H', W'). Slices are cut from ``image`` as given, in its pixels; the detections are
    scaled by (width / W', height / H').

    Output: per input ``{"instances": Instances((height, width))}`` with ``pred_boxes``
    (M, 4) XYXY, ``scores`` (M,), ``pred_classes`` (M,), by decreasing score, on the
    model's output device. Other prediction fields (masks, ...) are not carried over.
    """

    def __init__(
        self,
        model: nn.Module,
        slice_size=800,
        overlap=0.2,
        stride=None,
        batch_size: Optional[int] = None,
        full_image: bool = False,
        slice_augmentations: Optional[Sequence] = None,
        merge: str = "nms",
        match_metric: str = "iou",
        match_threshold: float = 0.5,
        class_agnostic: bool = False,
        max_detections: Optional[int] = None,
        pad_value: Optional[float] = None,
        enabled: bool = True,
        guided=None,
    ):
        """
        Args:
            model: a Detectron2 detector (``model(list of dicts) -> list of {"instances"}``).
            slice_size: slice side, or (height, width), in pixels of the input image.
            overlap: fraction of a slice shared with its neighbour, [0, 1) (or (y, x));
                the step is ``slice - int(overlap * slice)`` as in SAHI.
            stride: the step in pixels instead of ``overlap`` (SODA-D: 800 px slices, 650).
            batch_size: slices per model call (slices of one size are batched together;
                the full-image pass runs on its own). None: :data:`CPU_BATCH_SIZE` when the
                model's parameters are on the CPU (measured: batching slices only costs time
                there, the convolutions already use every core), :data:`DEVICE_BATCH_SIZE`
                on an accelerator.
            full_image: add a pass on the whole image (when it has more than one slice,
                as SAHI's ``perform_standard_pred``).
            slice_augmentations: Detectron2 augmentations applied to each slice and to the
                full image (the model's test-time resizing; the test mapper then leaves
                the image at its size). None/[]: slices as cut.
            merge: "nms" or "greedynmm". match_metric: "iou" or "ios".
            match_threshold: detections match when their metric is >= this (use
                :func:`above` for Detectron2's "> t").
            class_agnostic: merge across classes.
            max_detections: keep the best this many merged detections per image, >= 1 (None: all).
            pad_value: pad slices that are smaller than ``slice_size`` (images smaller than
                a slice) at the bottom/right with this value, as tools/split_images.py does;
                None: run them at their size (SAHI).
            enabled: False runs only the full-image pass (the plain model, with
                ``slice_augmentations``) and returns the model's outputs unchanged.
            guided: None (every slice runs), or a :class:`~sod2.inference.guided.GuidedSlicing`
                (or a dict of its arguments): the full-image pass always runs (on images of
                more than one slice) and only the slices its foreground map selects run.

        Every setting is checked here (:func:`check_slicing_args`): a bad one raises one
        :class:`~sod2.errors.UserError` line naming it and the values it may take. An image
        cut into more than :data:`MANY_SLICES` slices is warned about with the count before
        its first slice runs.
        """
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"SlicedInference wraps an nn.Module, got {type(model).__name__}")
        check_slicing_args(lambda arg, value: f"SlicedInference({arg}={value!r})", slice_size, overlap, stride,
                           batch_size, full_image, merge, match_metric, match_threshold, class_agnostic,
                           max_detections, pad_value, enabled)
        (self.slice_h, self.slice_w), (self.stride_y, self.stride_x) = slice_strides(slice_size, overlap, stride)
        self._warned_grids = set()  # (H, W) of inputs warned about (MANY_SLICES)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.full_image = bool(full_image)
        self.slice_augmentations = list(slice_augmentations or [])
        self.merge = merge
        self.match_metric = match_metric
        self.match_threshold = float(match_threshold)
        self.class_agnostic = bool(class_agnostic)
        self.max_detections = None if max_detections is None else int(max_detections)
        self.pad_value = None if pad_value is None else float(pad_value)
        self.enabled = bool(enabled)
        if isinstance(guided, dict):
            guided = GuidedSlicing(**guided)
        if guided is not None and not isinstance(guided, GuidedSlicing):
            raise UserError(f"SlicedInference(guided={guided!r}): None, a GuidedSlicing or a dict of its arguments")
        self.guided = guided
        self.training = model.training  # the wrapper starts in the model's mode
        self.model = model

    # ------------------------------------------------------------ the wrapped model's face
    @staticmethod
    def detector(model: nn.Module) -> nn.Module:
        """The detector inside a :class:`SlicedInference` wrapper (``model.model``), or
        ``model`` itself when it is not one (unwrap DDP first: ``sod2.engine.ema.unwrap_model``)."""
        return model.model if isinstance(model, SlicedInference) else model

    @property
    def device(self) -> torch.device:
        """The device of the wrapped model's first parameter or buffer (the CPU for a model
        without any, e.g. :class:`~sod2.inference.OnnxModel`)."""
        tensor = next(itertools.chain(self.model.parameters(), self.model.buffers()), None)
        return torch.device("cpu") if tensor is None else tensor.device

    def state_dict(self, *args, **kwargs):
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.model.load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return (f"slice=({self.slice_h}, {self.slice_w}), stride=({self.stride_y}, {self.stride_x}), "
                f"batch_size={self.batch_size}, full_image={self.full_image}, merge={self.merge}/"
                f"{self.match_metric}@{self.match_threshold:g}, class_agnostic={self.class_agnostic}, "
                f"max_detections={self.max_detections}, enabled={self.enabled}, guided={self.guided}")

    # ------------------------------------------------------------------------- geometry
    def resolved_batch_size(self) -> int:
        """Slices per model call: ``batch_size``, or when it is None the default of the
        device that holds the model's parameters (the CPU for a model without any)."""
        if self.batch_size is not None:
            return self.batch_size
        param = next(self.model.parameters(), None)
        on_cpu = param is None or param.device.type == "cpu"
        return CPU_BATCH_SIZE if on_cpu else DEVICE_BATCH_SIZE

    def windows(self, height: int, width: int) -> np.ndarray:
        """(S, 4) int64 slice windows ``x0, y0, x1, y1`` of a ``height`` x ``width`` input."""
        return slice_windows(height, width, (self.slice_h, self.slice_w), stride=(self.stride_y, self.stride_x))

    def _warn_many(self, count: int, height: int, width: int) -> None:
        """Warn (once per input size) when an image is cut into more than MANY_SLICES slices."""
        if count <= MANY_SLICES or (height, width) in self._warned_grids:
            return
        self._warned_grids.add((height, width))
        logger.warning("sliced inference: a %dx%d image is cut into %d slices of %dx%d px (stride %dx%d), one "
                       "model run each; this takes long -- a larger slice or stride, or a smaller overlap, "
                       "gives fewer (warned above %d slices)", width, height, count, self.slice_w, self.slice_h,
                       self.stride_x, self.stride_y, MANY_SLICES)

    # ---------------------------------------------------------------------------- running
    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            return self.model(batched_inputs)
        with torch.no_grad():  # not inference_mode: callers may edit the outputs in place
            return self.inference(batched_inputs)

    def _prepare(self, image: torch.Tensor, window=None) -> torch.Tensor:
        """(C, h, w) crop of ``image`` (padded if asked), with the slice augmentations applied."""
        with torch.profiler.record_function("sod2.sliced.prepare"):
            return self._prepared(image, window)

    def _prepared(self, image: torch.Tensor, window=None) -> torch.Tensor:
        if window is not None:
            x0, y0, x1, y1 = (int(v) for v in window)
            image = image[:, y0:y1, x0:x1]
            if self.pad_value is not None and (y1 - y0 < self.slice_h or x1 - x0 < self.slice_w):
                padded = image.new_full((image.shape[0], self.slice_h, self.slice_w), self.pad_value)
                padded[:, :y1 - y0, :x1 - x0] = image
                image = padded
        if not self.slice_augmentations:
            return image
        from detectron2.data import transforms as T

        arr = image.permute(1, 2, 0).cpu().numpy()
        aug = T.AugInput(np.ascontiguousarray(arr))
        T.AugmentationList(self.slice_augmentations)(aug)
        return torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))

    def _run(self, jobs: List[Dict]) -> List:
        """Run ``jobs`` (dicts with ``make`` () -> model input) in batches of slices of one
        shape; return the Instances of each job."""
        out: List = [None] * len(jobs)
        by_shape: Dict = {}
        for i, job in enumerate(jobs):
            by_shape.setdefault(job["shape"], []).append(i)
        size = self.resolved_batch_size()
        for idx in by_shape.values():
            for k in range(0, len(idx), size):
                chunk = idx[k:k + size]
                inputs = [jobs[i]["make"]() for i in chunk]
                with torch.profiler.record_function("sod2.sliced.forward"):
                    results = self.model(inputs)
                for i, r in zip(chunk, results):
                    out[i] = r["instances"]
        return out

    def _check(self, inp) -> torch.Tensor:
        image = inp.get("image") if isinstance(inp, dict) else None
        if not isinstance(image, torch.Tensor) or image.dim() != 3 or min(image.shape[1:]) == 0:
            what = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"SlicedInference: each input needs an 'image' tensor (C, H, W) with H, W > 0, "
                             f"got {what}")
        return image

    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        """Sliced predictions of ``batched_inputs`` (the class docstring has the formats)."""
        images = [self._check(inp) for inp in batched_inputs]
        sizes = [(int(inp.get("height", im.shape[1])), int(inp.get("width", im.shape[2])))
                 for inp, im in zip(batched_inputs, images)]
        jobs: List[Dict] = []
        owner: List = []  # (image index, window or None for the full image)
        done: List = []  # (image index, full-image Instances) of guided images
        selections: Dict[int, object] = {}
        for n, (im, (H, W)) in enumerate(zip(images, sizes)):
            wins = self.windows(im.shape[1], im.shape[2]) if self.enabled else np.zeros((0, 4), np.int64)
            self._warn_many(len(wins), im.shape[1], im.shape[2])
            if self.enabled and self.guided is not None and len(wins) > 1:
                inst, selections[n] = self._guided_pass(im, H, W, wins)
                if self.guided.size is None:  # a pass at the model's own input size: its detections count
                    done.append((n, inst))
                wins = wins[selections[n].ran]
            elif not self.enabled or (self.full_image and len(wins) > 1):
                jobs.append({"shape": ("full", n),
                             "make": (lambda im=im, H=H, W=W: {"image": self._prepare(im), "height": H, "width": W})})
                owner.append((n, None))
            for w in wins:
                h, wd = (self.slice_h, self.slice_w) if self.pad_value is not None else (w[3] - w[1], w[2] - w[0])
                jobs.append({"shape": (int(h), int(wd)),
                             "make": (lambda im=im, w=w, h=h, wd=wd: {"image": self._prepare(im, w),
                                                                      "height": int(h), "width": int(wd)})})
                owner.append((n, w))
        results = self._run(jobs)
        if not self.enabled:
            return [{"instances": r} for r in results]

        with torch.profiler.record_function("sod2.sliced.convert"):
            per_image, device = self._to_image(images, sizes, [(n, None) for n, _ in done] + owner,
                                               [i for _, i in done] + results)
        with torch.profiler.record_function("sod2.sliced.merge"):
            out = [{"instances": self._merged(parts, size, device)} for parts, size in zip(per_image, sizes)]
        for n, sel in selections.items():
            out[n]["slicing"] = sel
        return out

    def _to_image(self, images, sizes, owner, results):
        """Per image, the list of (boxes (K, 4) float64 in output pixels, scores (K,), classes
        (K,)) of its passes, and the device of the model's outputs."""
        per_image = [[] for _ in images]
        device = None
        for (n, w), inst in zip(owner, results):
            device = inst.scores.device
            boxes = inst.pred_boxes.tensor.detach().cpu().numpy().astype(np.float64)
            if w is not None:  # slice pixels -> input pixels -> output pixels
                Hi, Wi = images[n].shape[1:]
                boxes = boxes + np.array([w[0], w[1], w[0], w[1]], np.float64)
                if self.pad_value is not None:
                    boxes = np.minimum(boxes, [Wi, Hi, Wi, Hi])
                H, W = sizes[n]
                if (H, W) != (Hi, Wi):
                    boxes = boxes * np.array([W / Wi, H / Hi, W / Wi, H / Hi])
            per_image[n].append((boxes, inst.scores.detach().cpu().numpy(),
                                 inst.pred_classes.detach().cpu().numpy()))
        return per_image, device

    def _guided_pass(self, image: torch.Tensor, height: int, width: int, windows: np.ndarray):
        """The full-image pass of guided slicing on one (C, H', W') ``image``: its Instances
        (output pixels ``height`` x ``width``) and the :class:`SliceSelection` of ``windows``
        (input pixels) that its foreground map gives (:mod:`.guided`)."""
        g = self.guided
        tap = foreground_tap(self.model) if g.source in ("auto", "model") else None
        if g.source == "model" and tap is None:
            raise UserError(f"guided slicing: sod2 reads no foreground map from a {type(self.model).__name__} "
                            "(source='model'); use source='detections' (the full-image detections)")
        inp = {"image": self._prepare(image) if g.size is None else _longest_side(image, g.size),
               "height": height, "width": width}
        valid_hw = tuple(inp["image"].shape[1:])
        hi, wi = image.shape[1:]
        if tap is None:
            inst = self.model([inp])[0]["instances"]
            scale = torch.tensor([wi / width, hi / height, wi / width, hi / height])
            fg = detections_map(inst.pred_boxes.tensor.detach().cpu() * scale, inst.scores, hi, wi, g.cell)
        else:
            with tap.capturing(self.model) as captured:
                out = self.model([inp])[0]
            inst = out["instances"]
            maps, strides = tap.levels(captured, out)
            fg = maps_to_foreground(maps, strides, valid_hw, (hi, wi), tap.name)
        if not torch.isfinite(fg.prob).all():
            raise ValueError(f"guided slicing: the {fg.source} foreground map of a {wi}x{hi} image is not finite")
        return inst, select_windows(windows, fg, g.threshold, g.margin)

    def _merged(self, parts, size, device):
        from detectron2.structures import Boxes, Instances

        if not parts:  # guided with a reduced full-image pass and no slice selected: nothing found
            parts = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
        boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4)
        scores = np.concatenate([p[1] for p in parts]).reshape(-1)
        classes = np.concatenate([p[2] for p in parts]).reshape(-1)
        m = merge_detections(boxes, scores, classes, self.merge, self.match_metric, self.match_threshold,
                             self.class_agnostic, self.max_detections)
        inst = Instances(size)
        inst.pred_boxes = Boxes(torch.as_tensor(m.boxes, dtype=torch.float32, device=device))
        inst.scores = torch.as_tensor(m.scores, dtype=torch.float32, device=device)
        inst.pred_classes = torch.as_tensor(m.classes, dtype=torch.int64, device=device)
        return inst
