"""
INT8 post-training quantization of an exported sod2 model for the CPU (issue "Deployment"):
ONNX Runtime's static quantization (``onnxruntime.quantization.quantize_static``, QDQ format,
per-channel int8 weights, uint8 activations calibrated by min/max on images of a registered
dataset: the "U8S8" scheme, which ONNX Runtime's CPU provider fuses into ``QLinearConv`` /
``QLinearSigmoid`` / ``QLinearMul``; with int8 activations (S8S8) ONNX Runtime 1.32 on x86 left
the convolutions as ``DequantizeLinear`` + float ``Conv``, slower than the float32 model).
``tools/quantize_model.py`` is the command; the result is ``<out>/model.onnx`` +
``model.json`` (the float model's :class:`~sod2.export.metadata.ExportMetadata` with
``quantization`` set), runnable by :class:`sod2.inference.OnnxModel` like the float export.

What is quantized (:func:`plan_quantization`): the network, i.e. the convolutions / matrix
products with constant weights and everything that feeds them, up to the first data-dependent
selection (``TopK``, ``NonZero``, ``NonMaxSuppression``, ``ArgMax``/``ArgMin``). What stays
float32, excluded by name from the quantizer:

* everything downstream of such a selection: the Foreground Probe's top-K and its refinement
  module (FRM) in YOLOX, the proposals' top-k, RoIAlign and the box heads in the R-CNN
  families, RT-DETR's query selection and decoder, every NMS;
* the post-processing that feeds no convolution: YOLOX's decode (``exp`` of the box sizes,
  anchor offsets in pixels), the score path (``sigmoid(obj) * max sigmoid(cls)``, compared with
  a 0.01 threshold: 8-bit steps of ~1/256 would move detections across it), boxes, NMS;
* sampling coordinates: the grid of ``GridSample`` (CFINet's adaptive convolution in the CRPN,
  exported as its CPU path) and what computes it from the offset convolution;
* the outputs of the last convolutions (the prediction layers): their weights and inputs are
  int8, their float outputs (logits and box regressions) are not re-quantized
  (``OpTypesToExcludeOutputQuantization``), so boxes keep sub-pixel resolution.

The calibration images: ``num_images`` drawn without replacement, with ``numpy``'s
``default_rng(seed)``, from a registered Detectron2 dataset, read upright in the export's
channel order and resized by the export's test augmentations
(:func:`~sod2.export.metadata.build_test_augmentations`): the graph's input exactly as
:class:`~sod2.inference.OnnxModel` gets it at evaluation.

Supported families (:data:`SUPPORTED_FAMILIES`), each tried on a small export (the quantized
graph loads, runs in ONNX Runtime's CPU provider and finds the float model's top detections
again): YOLOX with Foreground Probing, RT-DETR, the R-CNN families (Faster and Cascade R-CNN,
SR-TOD Faster R-CNN, CFINet: its CRPN's deformable convolution is exported as ``GridSample``,
no ONNX ``DeformConv``) and RetinaNet. Refused in one line (:func:`check_supported`): a TorchScript
export, an already quantized graph, another family (not tried).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import UserError
from .metadata import ExportMetadata, build_test_augmentations

__all__ = ["SUPPORTED_FAMILIES", "DatasetCalibrationReader", "calibration_images",
           "plan_quantization", "check_supported", "quantize_export"]

logger = logging.getLogger(__name__)

# each tried on its small exported model: quantized, loaded and run by ONNX Runtime's CPU
# provider, the float model's top detections found again (tests/export/test_quantize.py)
SUPPORTED_FAMILIES = ("yolox", "rtdetr", "rcnn", "retinanet")

# data-dependent selections: what follows them stays float
SELECTION_OPS = frozenset({"TopK", "NonZero", "NonMaxSuppression", "ArgMax", "ArgMin"})
# the layers whose int8 weights give the speed-up
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# inputs that are pixel coordinates, not features: what computes them stays float (8-bit
# sampling positions would move CFINet's adaptive-convolution samples by up to a pixel)
COORDINATE_INPUTS = {"GridSample": (1,), "RoiAlign": (1,), "Resize": (1, 2, 3)}


def calibration_images(dataset: str, num_images: int, seed: int = 0) -> List[dict]:
    """``num_images`` dataset dicts of the registered ``dataset``, drawn without replacement
    with ``np.random.default_rng(seed)`` (sorted by their index in the dataset).

    Raises:
        UserError: an unregistered dataset name (the message lists the registered ones), an
            empty dataset, ``num_images`` < 1 or more than the dataset holds.
    """
    from detectron2.data import DatasetCatalog

    if not isinstance(num_images, int) or isinstance(num_images, bool) or num_images < 1:
        raise UserError(f"--num-images must be a positive integer, got {num_images!r}")
    names = DatasetCatalog.list()
    if dataset not in names:
        import difflib

        close = difflib.get_close_matches(dataset, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see detectron2.data.DatasetCatalog.list()"
        raise UserError(f"dataset {dataset!r} is not registered ({hint})")
    dicts = DatasetCatalog.get(dataset)  # a missing dataset folder: sod2's loaders raise UserError
    if not dicts:
        raise UserError(f"dataset {dataset!r} has no images")
    if num_images > len(dicts):
        raise UserError(f"--num-images {num_images}: dataset {dataset!r} has only {len(dicts)} images")
    chosen = np.sort(np.random.default_rng(seed).choice(len(dicts), size=num_images, replace=False))
    return [dicts[int(i)] for i in chosen]


class DatasetCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader``: one ``{"images": (1, 3, h, w) float32}`` per
    calibration image, the image as the export's test mapper gives it (read upright in
    ``meta.channel_order``, resized by ``build_test_augmentations(meta)``, 0-255, unpadded).

    Args:
        meta: the float export's metadata.
        records: dataset dicts with ``file_name`` (:func:`calibration_images`).
    Raises:
        UserError (from :meth:`arrays`): an unreadable image, or a resized size that a
            fixed-size export does not take.
    """

    def __init__(self, meta: ExportMetadata, records: Sequence[dict]):
        self.meta = meta
        self.records = list(records)
        self._iter: Optional[Iterator[dict]] = None

    def arrays(self) -> Iterator[np.ndarray]:
        """(1, 3, h, w) float32 per record, in order."""
        from detectron2.data import transforms as T

        from ..data.io import read_image

        augs = build_test_augmentations(self.meta)
        for rec in self.records:
            image = read_image(rec["file_name"], format=self.meta.channel_order)
            aug = T.AugInput(image)
            T.AugmentationList(augs)(aug)
            h, w = aug.image.shape[:2]
            if not self.meta.dynamic and [h, w] != list(self.meta.input_size):
                H, W = self.meta.input_size
                raise UserError(f"{rec['file_name']}: resized to {h}x{w} by the test augmentations, the export takes "
                                f"{H}x{W} only; calibrate on a dataset of that image size or export with --dynamic")
            yield np.ascontiguousarray(aug.image.transpose(2, 0, 1), dtype=np.float32)[None]

    # the CalibrationDataReader protocol
    def get_next(self) -> Optional[dict]:
        if self._iter is None:
            self._iter = ({self.meta.input_name: a} for a in self.arrays())
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None

    def __len__(self) -> int:
        return len(self.records)


def _consumers(graph) -> Dict[str, List]:
    out: Dict[str, List] = {}
    for node in graph.node:
        for t in node.input:
            if t:
                out.setdefault(t, []).append(node)
    return out


def plan_quantization(model) -> Tuple[List[str], List[str], Dict[str, int]]:
    """Which nodes of ``model`` (an ``onnx.ModelProto``) are quantized and which stay float.

    The network = the weighted layers (:data:`WEIGHTED_OPS` with a constant weight) that no
    data-dependent selection (:data:`SELECTION_OPS`) precedes, and all their ancestors except
    through coordinate inputs (:data:`COORDINATE_INPUTS`: a ``GridSample`` grid, ``RoiAlign``
    boxes); every other node stays float (see the module docstring).

    Returns:
        (names of the nodes to quantize, names of the nodes excluded, counts of the excluded
        nodes by op type)
    Raises:
        UserError: a graph with no weighted layer before any selection (nothing to quantize).
    """
    graph = model.graph
    for i, node in enumerate(graph.node):  # quantize_static addresses nodes by name
        if not node.name:
            node.name = f"sod2_unnamed_{i}_{node.op_type}"
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)

    downstream: Set[str] = set()
    stack = [n for n in graph.node if n.op_type in SELECTION_OPS]
    while stack:
        node = stack.pop()
        if node.name in downstream:
            continue
        downstream.add(node.name)
        for t in node.output:
            stack.extend(consumers.get(t, []))

    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS and n.name not in downstream
                and len(n.input) > 1 and n.input[1] in constants]
    if not weighted:
        raise UserError("the graph has no convolution or matrix product before its first selection step: "
                        "nothing to quantize")
    network: Set[str] = set()
    stack = list(weighted)
    while stack:
        node = stack.pop()
        if node.name in network:
            continue
        network.add(node.name)
        for k, t in enumerate(node.input):
            if k in COORDINATE_INPUTS.get(node.op_type, ()):
                continue
            if t in producer:
                stack.append(producer[t])
    quantize = [n.name for n in graph.node if n.name in network]
    excluded = [n.name for n in graph.node if n.name not in network]
    counts: Dict[str, int] = {}
    for n in graph.node:
        if n.name not in network:
            counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return quantize, excluded, counts


def check_supported(meta: ExportMetadata, model, onnx_path: str) -> None:
    """Refuse, in one line, what INT8 quantization does not cover: a TorchScript export, an
    already quantized model, a family other than :data:`SUPPORTED_FAMILIES` (not tried)."""
    if meta.format != "onnx":
        raise UserError(f"{onnx_path}: INT8 quantization takes an ONNX export, this is {meta.format}")
    ops = {n.op_type for n in model.graph.node}
    if meta.quantization is not None or ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}:
        raise UserError(f"{onnx_path}: already quantized (QuantizeLinear/DequantizeLinear in the graph); "
                        "quantize the float32 export")
    if meta.family not in SUPPORTED_FAMILIES:
        raise UserError(f"{onnx_path}: INT8 quantization is not supported for {meta.meta_architecture} (family "
                        f"{meta.family!r}; supported: {', '.join(SUPPORTED_FAMILIES)})")


def quantize_export(onnx_path: str, dataset: str, output: str, num_images: int = 64, seed: int = 0,
                    per_channel: bool = True, calibrate_method: str = "minmax",
                    reduce_range: bool = False) -> ExportMetadata:
    """Quantize the float export ``onnx_path`` (+ its ``.json``) into ``output``/<same name>.

    Args:
        onnx_path: a float32 ``model.onnx`` of ``tools/export_model.py``.
        dataset: a registered dataset name; its images calibrate the activation ranges.
        output: folder of the INT8 ``<name>.onnx`` + ``<name>.json``; not the float model's folder.
        num_images, seed: the calibration images (:func:`calibration_images`).
        per_channel: per-output-channel weight scales (else one per tensor).
        calibrate_method: "minmax", "entropy" or "percentile" (ONNX Runtime's calibrators).
        reduce_range: 7-bit weights, for x86 CPUs without VNNI (AVX2 only), where ONNX
            Runtime's u8 x s8 products can saturate (its documentation's advice).
    Returns:
        the INT8 model's metadata (``quantization`` set).
    Raises:
        UserError: one line: missing file/metadata/package, an unsupported model, a bad dataset
            or count, an output folder that would overwrite the float model. Nothing is left
            in ``output`` on any failure (temporary names, renamed at the end).
    """
    from ..data.io import atomic_path
    from ..inference.onnx_model import import_onnxruntime, metadata_path
    from .onnx import require_export_packages

    require_export_packages("onnx")
    import_onnxruntime()
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    onnx_path = os.fspath(onnx_path)
    if not os.path.isfile(onnx_path):
        raise UserError(f"{onnx_path}: no such ONNX file")
    json_path = metadata_path(onnx_path)
    if not os.path.isfile(json_path):
        raise UserError(f"{onnx_path}: its export metadata {json_path} is missing (tools/export_model.py writes "
                        "<name>.onnx and <name>.json together)")
    meta = ExportMetadata.from_json(json_path)
    if calibrate_method not in CALIBRATION_METHODS:
        raise UserError(f"--calibrate-method must be one of {list(CALIBRATION_METHODS)}, got {calibrate_method!r}")
    name = os.path.basename(onnx_path)
    dest = os.path.join(output, name)
    dest_json = metadata_path(dest)
    if os.path.abspath(dest) == os.path.abspath(onnx_path):
        raise UserError(f"--output {output}: would overwrite the float model {onnx_path}; give another folder")
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--output {output}: exists and is not a folder")
    try:
        model = onnx.load(onnx_path)
    except Exception as e:  # onnx raises DecodeError and others on a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{onnx_path}: not a readable ONNX model ({first})") from None
    check_supported(meta, model, onnx_path)
    records = calibration_images(dataset, num_images, seed)
    reader = DatasetCalibrationReader(meta, records)
    quantize, excluded, counts = plan_quantization(model)
    logger.info("quantizing %d nodes; %d stay float32 (%s)", len(quantize), len(excluded),
                ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    class _Reader(CalibrationDataReader):
        def get_next(self):
            return reader.get_next()

        def rewind(self):
            reader.rewind()

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]
    created = not os.path.isdir(output)
    os.makedirs(output, exist_ok=True)
    wrote_json = False
    try:
        with tempfile.TemporaryDirectory(prefix=".sod2-quantize-", dir=output) as work:
            src = os.path.join(work, "float.onnx")
            onnx.save(model, src)  # with the node names plan_quantization gave unnamed nodes
            with atomic_path(dest) as tmp, _quiet_quantizer():
                quantize_static(
                    src, tmp, _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=reduce_range, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded, calibrate_method=method,
                    extra_options={"OpTypesToExcludeOutputQuantization": sorted(WEIGHTED_OPS)})
                _check_quantized(tmp, onnx_path)
                meta_q = ExportMetadata(**{**meta.to_dict(), "quantization": {
                    "dtype": "int8", "format": "QDQ",
                    "weights": ("per_channel" if per_channel else "per_tensor") + (" 7-bit" if reduce_range else ""),
                    "activations": "uint8 (asymmetric)", "calibrate_method": calibrate_method, "dataset": dataset,
                    "num_images": len(records), "seed": int(seed), "float_model": os.path.abspath(onnx_path),
                    "quantized_nodes": len(quantize), "float_nodes": len(excluded)}})
                meta_q.to_json(dest_json)  # before the model's rename: no model without its JSON
                wrote_json = True
    except BaseException:
        if wrote_json and os.path.isfile(dest_json):
            os.remove(dest_json)
        if created and os.path.isdir(output) and not os.listdir(output):
            os.rmdir(output)
        raise
    return meta_q


@contextlib.contextmanager
def _quiet_quantizer():
    """Silence two messages of ``quantize_static`` that do not apply here: its advice to run
    ``quant_pre_process`` (the dynamo exporter has folded BatchNorm and constants already) and
    NumPy's warnings while it computes a scale for every calibrated tensor, also for the
    post-processing tensors that stay float (YOLOX's NMS offset starts from ``-inf``).
    :func:`_check_quantized` then checks every scale and zero point that is used."""
    root = logging.getLogger()

    def drop(record):
        return not str(record.msg).startswith(("Please consider", "Created a copy of bias"))

    root.addFilter(drop)
    try:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"onnxruntime\.quantization")
            yield
    finally:
        root.removeFilter(drop)


def _check_quantized(path: str, source: str) -> None:
    """The quantizer's output has QDQ nodes, and every scale they use is finite and > 0 (a
    non-finite calibration range of a quantized tensor would give NaN scales; that is a
    RuntimeError, not a silent NaN model)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path, load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" not in ops or "DequantizeLinear" not in ops:
        raise RuntimeError(f"quantizing {source} produced no QuantizeLinear/DequantizeLinear nodes")
    init = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[1] in init:
            scale = numpy_helper.to_array(init[node.input[1]])
            if not (np.isfinite(scale).all() and (scale > 0).all()):
                raise RuntimeError(f"quantizing {source}: tensor {node.input[0]!r} got the scale(s) "
                                   f"{scale.ravel()[:4].tolist()} (a non-finite or empty calibration range)")
