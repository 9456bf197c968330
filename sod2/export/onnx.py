"""
ONNX export of a graph wrapper (:mod:`sod2.export.graphs`) with torch's dynamo exporter,
written atomically. Needs the optional ``export`` extra (``pip install -e .[export]``:
onnx, onnxruntime, onnxscript); without it :func:`require_export_packages` says what to
install in one line.
"""
import importlib
from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import UserError

__all__ = ["OPSET", "require_export_packages", "export_onnx"]

OPSET = 19  # ONNX DeformConv (CFINet's CRPN) needs 19; ONNX Runtime 1.17+ runs it


def require_export_packages(*names: str) -> None:
    """UserError naming what to install when a package of the ``export`` extra is missing."""
    missing = []
    for n in names or ("onnx", "onnxscript"):
        try:
            importlib.import_module(n)
        except ImportError:
            missing.append(n)
    if missing:
        raise UserError(f"export: missing package(s) {', '.join(missing)}: "
                        "install them with `pip install -e .[export]` (or `pip install onnx onnxruntime onnxscript`)")


def _translations() -> dict:
    """Custom ATen -> ONNX translations for the dynamo exporter: ``aten.sort.stable`` (the
    Foreground Probe's top-K selection, a stable descending sort) has no ONNX function in torch
    2.13; ONNX ``TopK`` over the whole axis is the same sort, its ties broken by the lower index
    first (the ONNX spec), i.e. stable."""
    from onnxscript import opset18 as op

    def sort_stable(self, stable=None, dim: int = -1, descending: bool = False):
        k = op.Shape(self, start=-1) if dim == -1 else op.Shape(self, start=dim, end=dim + 1)
        values, indices = op.TopK(self, k, axis=dim, largest=descending, sorted=True)
        return values, indices

    return {torch.ops.aten.sort.stable: sort_stable}


def export_onnx(graph: nn.Module, sample: Tensor, path: str, dynamic: bool = False,
                dynamic_batch: bool = False, opset: int = OPSET) -> None:
    """Export ``graph`` (images (B, 3, H, W) -> boxes, scores, classes, batch_index) to ``path``.

    Args:
        sample: (B, 3, H, W) float32 example input (a test-mapper image).
        dynamic: H and W are symbolic (the exported graph takes any size).
        dynamic_batch: B is symbolic too.
    The file appears only when the export succeeded (temporary name, then rename).
    """
    require_export_packages("onnx", "onnxscript")
    from ..data.io import atomic_path

    shapes = None
    if dynamic or dynamic_batch:
        axes = {}
        if dynamic_batch:
            # torch.export specialises a size-1 sample axis to 1: trace with a batch of two
            sample = torch.cat([sample, sample]) if sample.shape[0] == 1 else sample
            axes[0] = torch.export.Dim("batch", min=1, max=1024)
        if dynamic:
            low = int(getattr(graph, "min_input_size", 32))  # RTDETRGraph: enough tokens for its queries
            axes[2] = torch.export.Dim("height", min=low, max=8192)
            axes[3] = torch.export.Dim("width", min=low, max=8192)
        shapes = ({k: v for k, v in axes.items()},)
    with torch.no_grad():
        program = torch.onnx.export(graph.eval(), (sample,), dynamo=True, opset_version=opset,
                                    input_names=["images"],
                                    output_names=["boxes", "scores", "classes", "batch_index"],
                                    dynamic_shapes=shapes, verbose=False,
                                    custom_translation_table=_translations())
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    with atomic_path(path) as tmp:
        program.save(tmp)
