"""Sliced inference: any sod2 / Detectron2 detector on images far larger than its input.

* :class:`SlicedInference` wraps a model (an ``nn.Module`` with the model's interface);
* :func:`slice_windows` is the slice geometry (sod2's patch geometry, SAHI's windows);
* :func:`merge_detections` is sod2's one merging implementation (NMS / GREEDYNMM, IoU / IoS);
* :class:`OnnxModel` runs an exported model (ONNX Runtime) with a Detectron2 model's call;
* :func:`with_slicing` / :func:`apply_slicing_block` slice a LazyConfig's model.
"""
from .config import apply_slicing_block, with_slicing  # noqa: F401
from .mapper import FillIgnoreMapper  # noqa: F401
from .onnx_model import OnnxModel  # noqa: F401  (onnxruntime is imported when one is built)
from .merge import MATCH_METRICS, MERGE_METHODS, MergeResult, merge_detections, pairwise_metric  # noqa: F401
from .sliced import SlicedInference, above  # noqa: F401
from .slicing import draw_slice_windows, slice_strides, slice_windows  # noqa: F401

__all__ = ["SlicedInference", "OnnxModel", "FillIgnoreMapper", "with_slicing", "apply_slicing_block", "above",
           "merge_detections", "MergeResult", "pairwise_metric", "slice_windows", "slice_strides",
           "draw_slice_windows", "MERGE_METHODS", "MATCH_METRICS"]
