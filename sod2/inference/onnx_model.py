"""``OnnxModel``: an exported sod2 detector (``tools/export_model.py``) run by ONNX Runtime with
a Detectron2 model's call, so that the demo, evaluation (``inference_on_dataset`` with the
config's evaluator) and :class:`~sod2.inference.SlicedInference` take it unchanged.

    model = OnnxModel("out/model.onnx")          # reads out/model.json (ExportMetadata) too
    outputs = model([{"image": image, "height": H, "width": W}])   # image: (3, h, w) as the
    outputs[0]["instances"]                      # config's test mapper gives it

The graph (the export contract, :mod:`sod2.export.metadata`) takes the test mapper's image
(resized, not normalised, not padded) and returns flat ``boxes`` (M, 4) XYXY in input pixels,
``scores`` (M,), ``classes`` (M,), ``batch_index`` (M,). The step to the original size
(``height``/``width``; YOLOX's ``resize_ratio``; clipping and the per-image cap as the PyTorch
model) is :func:`sod2.export.postprocess.to_original`, the same code as the parity tests'.

onnxruntime is imported when a model is built (the optional ``export`` extra): sod2 imports
without it, and building an ``OnnxModel`` without it is one line naming ``pip install -e .[export]``.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError

__all__ = ["OnnxModel", "import_onnxruntime", "check_against_config", "like_config_model", "metadata_path"]

INSTALL_HINT = "pip install -e .[export]"


def import_onnxruntime():
    """The ``onnxruntime`` module; :class:`UserError` (one line naming the extra) without it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"running an exported ONNX model needs onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def metadata_path(onnx_path: str) -> str:
    """``<name>.json`` next to ``<name>.onnx``."""
    return os.path.splitext(onnx_path)[0] + ".json"


class OnnxModel(nn.Module):
    """An exported detector with the interface of a Detectron2 model in eval mode.

    Input: a list of dicts with ``image`` (3, h, w) uint8 or float tensor in the model's
    ``input_format`` (channel order), already resized by the test augmentations (the config's
    test mapper, or :func:`sod2.export.metadata.build_test_augmentations`), and optional
    ``height``/``width`` (the size to report boxes in, default h, w) and ``resize_ratio``
    (YOLOX's test mapper).
    Output: per input ``{"instances": Instances((height, width))}`` with ``pred_boxes`` (K, 4)
    XYXY, ``scores`` (K,) float32, ``pred_classes`` (K,) int64, by decreasing score, on the CPU.

    The graph runs once per image, or once per group of same-size images when the export has
    a dynamic batch (``metadata.dynamic_batch``); its outputs are split by ``batch_index``.

    What Detectron2 code reads on a model is here: ``training`` (always False: :meth:`train`
    refuses True), :meth:`eval`, :meth:`to` (the CPU only: ONNX Runtime places the graph by
    its ``providers``), ``device``, ``input_format``, ``metadata``; it has no parameters
    (so :class:`~sod2.inference.SlicedInference` picks its CPU batch size).
    """

    def __init__(self, path, providers: Optional[Sequence[str]] = None, metadata=None, session_options=None):
        """
        Args:
            path: the ``.onnx`` file.
            providers: ONNX Runtime execution providers, in order of preference (default
                ``["CPUExecutionProvider"]``; e.g. ``["CUDAExecutionProvider",
                "CPUExecutionProvider"]``).
            metadata: an :class:`~sod2.export.metadata.ExportMetadata`, or the path of its
                JSON; None reads ``<name>.json`` next to ``path``.
            session_options: an ``onnxruntime.SessionOptions`` (threads, graph optimisation
                level, execution mode); None: ONNX Runtime's defaults (all graph optimisations,
                sequential execution, one intra-op thread per physical core).
        Raises:
            UserError: one line: onnxruntime missing, no such file, the metadata JSON missing
                or invalid, a file ONNX Runtime cannot load (damaged, not ONNX), a graph whose
                input/output names or input shape do not match the metadata.
        """
        super().__init__()
        from ..export.metadata import ExportMetadata

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such ONNX file")
        if metadata is None:
            json_path = metadata_path(path)
            if not os.path.isfile(json_path):
                raise UserError(f"{path}: its export metadata {json_path} is missing (tools/export_model.py "
                                "writes <name>.onnx and <name>.json together; keep them side by side)")
            metadata = ExportMetadata.from_json(json_path)
        elif isinstance(metadata, (str, os.PathLike)):
            json_path = os.fspath(metadata)
            metadata = ExportMetadata.from_json(json_path)
        else:
            json_path = "<metadata>"
            metadata.validate(json_path)
        if metadata.format != "onnx":
            raise UserError(f"{json_path}: describes a {metadata.format} export, not an ONNX model ({path})")
        ort = import_onnxruntime()
        providers = list(providers) if providers else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(path, sess_options=session_options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"{path}: ONNX Runtime cannot load it (a damaged or non-ONNX file?): {first}") from None
        inputs, outputs = session.get_inputs(), session.get_outputs()
        in_names, out_names = [i.name for i in inputs], [o.name for o in outputs]
        if in_names != [metadata.input_name] or sorted(out_names) != sorted(metadata.output_names):
            raise UserError(f"{path} does not match its metadata {json_path}: the graph has inputs {in_names} and "
                            f"outputs {out_names}, the metadata names {[metadata.input_name]} and "
                            f"{list(metadata.output_names)}")
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise UserError(f"{path}: the graph's input {metadata.input_name} has shape {shape}, not (B, 3, H, W)")
        hw = shape[2:]
        fixed = all(isinstance(v, int) for v in hw)
        if metadata.dynamic == fixed or (fixed and list(hw) != list(metadata.input_size)):
            raise UserError(f"{path} does not match its metadata {json_path}: the graph takes (H, W) = "
                            f"{tuple(hw)}, the metadata says " + ("dynamic" if metadata.dynamic else
                                                                  f"{tuple(metadata.input_size)}"))
        self.path = path
        self.metadata = metadata
        self.providers = session.get_providers()
        self.input_format = metadata.channel_order
        self.training = False
        self._session = session
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None

    def extra_repr(self) -> str:
        size = "dynamic" if self.metadata.dynamic else "x".join(str(v) for v in self.metadata.input_size)
        return (f"path={self.path!r}, family={self.metadata.family}, input={self.input_format} {size}, "
                f"classes={len(self.metadata.class_names)}, providers={self.providers}")

    # ------------------------------------------------------------- a Detectron2 model's face
    @property
    def device(self) -> torch.device:
        """Where the outputs are: the CPU (ONNX Runtime returns NumPy arrays)."""
        return torch.device("cpu")

    def train(self, mode: bool = True):
        """``train(False)``/``eval()`` are accepted; an exported graph cannot be trained."""
        if mode:
            raise UserError(f"{self.path}: an exported ONNX model runs inference only; train the PyTorch model")
        return super().train(False)

    def to(self, *args, **kwargs):
        """The CPU (or a dtype-free call) is accepted and changes nothing; another device is
        refused: ONNX Runtime runs the graph on its ``providers`` (``OnnxModel(path,
        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])``)."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and torch.device(device).type != "cpu":
            raise UserError(f"{self.path}: an ONNX model is not moved with .to({device}); give ONNX Runtime's "
                            "providers instead, e.g. providers=['CUDAExecutionProvider', 'CPUExecutionProvider']")
        if dtype is not None and dtype != torch.float32:
            raise UserError(f"{self.path}: an exported ONNX model takes float32 inputs; .to({dtype}) is not possible")
        return self

    # ---------------------------------------------------------------------------- running
    def _input(self, n: int, inp) -> np.ndarray:
        """(3, h, w) float32 array of input ``n``; UserError for a wrong shape/size/value."""
        image = inp.get("image") if isinstance(inp, dict) else None
        if not isinstance(image, torch.Tensor) or image.dim() != 3:
            what = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise UserError(f"{self.path}: input {n} needs an 'image' tensor (C, H, W), got {what}")
        if image.shape[0] != 3:
            raise UserError(f"{self.path}: input {n} has {image.shape[0]} channel(s); the exported model takes 3 "
                            f"({self.input_format}), image shape {tuple(image.shape)}")
        h, w = int(image.shape[1]), int(image.shape[2])
        if not self.metadata.dynamic and [h, w] != list(self.metadata.input_size):
            H, W = self.metadata.input_size
            raise UserError(f"{self.path}: exported for {H}x{W} (HxW) input images only, got {h}x{w}; resize with "
                            "the test mapper's augmentations, or export with --dynamic")
        if min(h, w) == 0:
            raise UserError(f"{self.path}: input {n} is empty ({h}x{w})")
        arr = image.detach().cpu().to(torch.float32).numpy()
        if image.is_floating_point() and not np.isfinite(arr).all():
            raise UserError(f"{self.path}: input {n} has NaN or infinite pixel values")
        return arr

    def _groups(self, arrays: List[np.ndarray]) -> List[List[int]]:
        """Indices run together: same-size images when the batch is dynamic, else one each."""
        if not self.metadata.dynamic_batch or self._fixed_batch is not None:
            return [[i] for i in range(len(arrays))]
        groups: Dict = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        return list(groups.values())

    def _run(self, batch: np.ndarray):
        """(boxes (M, 4), scores (M,), classes (M,), batch_index (M,)) of a (B, 3, h, w) batch."""
        names = list(self.metadata.output_names)
        try:
            return self._session.run(names, {self.metadata.input_name: batch})
        except Exception as e:  # onnxruntime's own exception types; e.g. a size outside the export's range
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"{self.path}: ONNX Runtime failed on an input of shape {tuple(batch.shape)}: "
                            f"{first}") from None

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        from ..export.postprocess import to_original

        if self.training:  # set behind train()'s back
            raise UserError(f"{self.path}: an exported ONNX model runs inference only")
        arrays = [self._input(n, inp) for n, inp in enumerate(batched_inputs)]
        meta = self.metadata
        results: List = [None] * len(arrays)
        for group in self._groups(arrays):
            outputs = self._run(np.stack([arrays[i] for i in group]))
            try:
                mapped = to_original(*outputs, [batched_inputs[i] for i in group], arrays[group[0]].shape[1:],
                                     family=meta.family, clip_boxes=meta.clip_boxes,
                                     max_detections_per_image=meta.max_detections_per_image)
            except UserError as e:
                raise UserError(f"{self.path}: {e}") from None
            for i, inst in zip(group, mapped):
                results[i] = {"instances": inst}
        return results


def config_input(cfg) -> Dict:
    """What the config feeds a model: ``{"classes": K or None, "format": "BGR"/"RGB" or None}``
    (the model's class count and the test mapper's ``image_format``)."""
    from ..engine.preflight import model_num_classes

    found = model_num_classes(cfg) if "model" in cfg else None
    classes = found[1] if found else None
    fmt = None
    if "dataloader" in cfg and "test" in cfg.dataloader:
        fmt = cfg.dataloader.test.get("mapper", {}).get("image_format", None)
    return {"classes": classes, "format": fmt}


def check_against_config(model: OnnxModel, cfg, config_file: str = "the config") -> None:
    """Refuse an exported model that the config's data cannot feed: another class count or
    another channel order than the config's test mapper (an ONNX file of another model).

    Raises:
        UserError: one line naming both files and the mismatch.
    """
    seen = config_input(cfg)
    k = len(model.metadata.class_names)
    if seen["classes"] is not None and seen["classes"] != k:
        raise UserError(f"{model.path} is a model of {k} classes, {config_file} has {seen['classes']}: "
                        "an exported file of another model?")
    if seen["format"] is not None and seen["format"] != model.input_format:
        raise UserError(f"{model.path} takes {model.input_format} images, the test mapper of {config_file} gives "
                        f"{seen['format']}: an exported file of another model?")


def like_config_model(model: OnnxModel, model_cfg) -> nn.Module:
    """``model`` wrapped as the config's model is: a config whose model is a
    :class:`~sod2.inference.SlicedInference` (``with_slicing``, a ``slicing`` block) gives
    ``SlicedInference(model, <the config's settings>)``; any other config, ``model`` itself."""
    from detectron2.config import instantiate

    from .sliced import SlicedInference

    target = model_cfg.get("_target_") if hasattr(model_cfg, "get") else None
    if not (isinstance(target, type) and issubclass(target, SlicedInference)):
        return model
    kwargs = {k: instantiate(v) for k, v in model_cfg.items() if k not in ("_target_", "model")}
    return SlicedInference(model, **kwargs).eval()
