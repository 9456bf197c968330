"""
The JSON written next to an exported model (``model.onnx`` + ``model.json``): what a runtime
needs to feed the graph and to map its outputs back to the original image, without the config.

The graph's contract (issue "Deployment"): input ``images`` float32 (B, 3, H, W), the image as
the config's TEST mapper gives it to the PyTorch model (channel order ``channel_order``, range
0-255, resized by the test augmentations described in ``test_resize``, not normalised, not
padded; normalisation and padding happen inside the graph). Outputs, flat over the batch:
``boxes`` (M, 4) float32 XYXY in input-image pixels, ``scores`` (M,) float32, ``classes`` (M,)
int64, ``batch_index`` (M,) int64.
"""
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional

from detectron2.data import transforms as T

from ..errors import UserError

__all__ = ["ExportMetadata", "describe_test_augmentations", "build_test_augmentations",
           "OUTPUT_NAMES", "INPUT_NAME"]

INPUT_NAME = "images"
OUTPUT_NAMES = ["boxes", "scores", "classes", "batch_index"]
_FORMATS = ("onnx", "torchscript")
_EXPORTERS = ("dynamo", "torchscript")
_RESIZE_KINDS = ("shortest_edge", "yolox", "fixed", "none")


@dataclasses.dataclass
class ExportMetadata:
    """Everything a runtime needs besides the graph (see the module docstring).

    ``input_size`` is None for a dynamic export, else [H, W]: the only size the graph takes.
    ``test_resize`` is one of ``{"kind": "shortest_edge", "short_edge_length": [..], "max_size":
    int, "sample_style": "choice"|"range"}``, ``{"kind": "yolox", "size": [H, W],
    "pre_resize": bool}``, ``{"kind": "fixed", "height": H, "width": W}``, ``{"kind": "none"}``.
    """

    format: str
    model_file: str
    family: str
    meta_architecture: str
    channel_order: str
    pixel_mean: List[float]
    pixel_std: List[float]
    test_resize: Dict[str, Any]
    input_size: Optional[List[int]]
    dynamic: bool
    dynamic_batch: bool
    class_names: List[str]
    score_threshold: float
    max_detections_per_image: Optional[int]
    clip_boxes: bool
    opset: Optional[int]
    sod2_version: str
    torch_version: str
    exporter: str
    config_file: Optional[str] = None
    checkpoint: Optional[str] = None
    input_name: str = INPUT_NAME
    output_names: List[str] = dataclasses.field(default_factory=lambda: list(OUTPUT_NAMES))
    pixel_range: List[float] = dataclasses.field(default_factory=lambda: [0, 255])
    normalization: str = "in_graph"
    # None for a float model; for an INT8 model of tools/quantize_model.py a dict
    # {"dtype": "int8", "format": "QDQ", "dataset": name, "num_images": N, "seed": int, ...}
    quantization: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str) -> None:
        """Write atomically (a temporary name, then a rename)."""
        from ..data.io import atomic_write_text

        self.validate(path)
        atomic_write_text(json.dumps(self.to_dict(), indent=2) + "\n", path)

    @classmethod
    def from_json(cls, path: str) -> "ExportMetadata":
        """Read and validate; UserError naming the file (and field) on anything wrong."""
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            raise UserError(f"{path}: export metadata file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: not a readable export metadata JSON ({e})") from None
        if not isinstance(data, dict):
            raise UserError(f"{path}: export metadata must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise UserError(f"{path}: export metadata lacks field(s) {', '.join(missing)}")
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{path}: export metadata has unknown field(s) {', '.join(unknown)}")
        meta = cls(**data)
        meta.validate(path)
        return meta

    def validate(self, path: str = "<metadata>") -> None:
        def bad(field: str, why: str):
            raise UserError(f"{path}: field '{field}' {why}")

        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")

        if self.format not in _FORMATS:
            bad("format", f"must be one of {list(_FORMATS)}, got {self.format!r}")
        if self.exporter not in _EXPORTERS:
            bad("exporter", f"must be one of {list(_EXPORTERS)}, got {self.exporter!r}")
        for f in ("model_file", "family", "meta_architecture", "sod2_version", "torch_version", "input_name"):
            if not isinstance(getattr(self, f), str) or not getattr(self, f):
                bad(f, f"must be a non-empty string, got {getattr(self, f)!r}")
        if os.path.basename(self.model_file) != self.model_file:
            bad("model_file", f"must be a file name without a folder, got {self.model_file!r}")
        if self.channel_order not in ("BGR", "RGB"):
            bad("channel_order", f"must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if self.normalization != "in_graph":
            bad("normalization", f"must be 'in_graph', got {self.normalization!r}")
        for f in ("pixel_mean", "pixel_std", "pixel_range"):
            v = getattr(self, f)
            if not isinstance(v, list) or not v or not all(is_num(x) for x in v):
                bad(f, f"must be a non-empty list of finite numbers, got {v!r}")
        if self.output_names != OUTPUT_NAMES:
            bad("output_names", f"must be {OUTPUT_NAMES}, got {self.output_names!r}")
        if not isinstance(self.dynamic, bool) or not isinstance(self.dynamic_batch, bool):
            bad("dynamic", "and 'dynamic_batch' must be booleans")
        if self.dynamic:
            if self.input_size is not None:
                bad("input_size", f"must be null for a dynamic export, got {self.input_size!r}")
        elif not (isinstance(self.input_size, list) and len(self.input_size) == 2
                  and all(is_int(x) and x > 0 for x in self.input_size)):
            bad("input_size", f"must be [H, W] (positive integers) for a fixed-size export, got {self.input_size!r}")
        if not isinstance(self.class_names, list) or not all(isinstance(c, str) for c in self.class_names):
            bad("class_names", f"must be a list of strings, got {self.class_names!r}")
        if not is_num(self.score_threshold):
            bad("score_threshold", f"must be a finite number, got {self.score_threshold!r}")
        if self.max_detections_per_image is not None and not (
                is_int(self.max_detections_per_image) and self.max_detections_per_image > 0):
            bad("max_detections_per_image", f"must be a positive integer or null, got {self.max_detections_per_image!r}")
        if not isinstance(self.clip_boxes, bool):
            bad("clip_boxes", f"must be a boolean, got {self.clip_boxes!r}")
        if self.opset is not None and not is_int(self.opset):
            bad("opset", f"must be an integer or null, got {self.opset!r}")
        _check_resize(self.test_resize, lambda why: bad("test_resize", why))
        q = self.quantization
        if q is not None and not (isinstance(q, dict) and q.get("dtype") == "int8"
                                  and isinstance(q.get("dataset"), str) and q["dataset"]
                                  and is_int(q.get("num_images")) and q["num_images"] > 0):
            bad("quantization", f"must be null or a dict with 'dtype': 'int8', 'dataset' (a name) and "
                "'num_images' (a positive integer), got {q!r}")


def _check_resize(d: Any, fail) -> None:
    if not isinstance(d, dict) or d.get("kind") not in _RESIZE_KINDS:
        fail(f"must be a dict with 'kind' in {list(_RESIZE_KINDS)}, got {d!r}")
    kind = d["kind"]

    def pos_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    if kind == "shortest_edge":
        lengths = d.get("short_edge_length")
        if not (isinstance(lengths, list) and lengths and all(pos_int(x) for x in lengths)):
            fail(f"'short_edge_length' must be a list of positive integers, got {lengths!r}")
        if not pos_int(d.get("max_size")):
            fail(f"'max_size' must be a positive integer, got {d.get('max_size')!r}")
        if d.get("sample_style", "choice") not in ("choice", "range"):
            fail(f"'sample_style' must be 'choice' or 'range', got {d.get('sample_style')!r}")
    elif kind == "yolox":
        size = d.get("size")
        if not (isinstance(size, list) and len(size) == 2 and all(pos_int(x) for x in size)):
            fail(f"'size' must be [H, W] (positive integers), got {size!r}")
        if not isinstance(d.get("pre_resize", True), bool):
            fail(f"'pre_resize' must be a boolean, got {d.get('pre_resize')!r}")
    elif kind == "fixed":
        if not (pos_int(d.get("height")) and pos_int(d.get("width"))):
            fail(f"'height' and 'width' must be positive integers, got {d!r}")


def describe_test_augmentations(augmentations) -> Dict[str, Any]:
    """The dict form (``ExportMetadata.test_resize``) of a test mapper's augmentations.

    Args:
        augmentations: the instantiated list of Detectron2 augmentations (at most one resize).
    Raises:
        UserError: augmentations that cannot be described (several, or of another kind).
    """
    from ..data.transforms import YOLOXTestResize

    augs = [a for a in (augmentations or []) if not isinstance(a, T.NoOpTransform)]
    if not augs:
        return {"kind": "none"}
    if len(augs) > 1:
        raise UserError(f"export: the test mapper has {len(augs)} augmentations "
                        f"({', '.join(type(a).__name__ for a in augs)}); only one resize can be exported")
    a = augs[0]
    if isinstance(a, T.ResizeShortestEdge):
        return {"kind": "shortest_edge", "short_edge_length": [int(x) for x in a.short_edge_length],
                "max_size": int(a.max_size), "sample_style": "range" if a.is_range else "choice",
                "interp": int(a.interp)}
    if isinstance(a, YOLOXTestResize):
        return {"kind": "yolox", "size": [int(a.size[0]), int(a.size[1])], "pre_resize": bool(a.pre_resize)}
    if isinstance(a, T.Resize):
        return {"kind": "fixed", "height": int(a.shape[0]), "width": int(a.shape[1]), "interp": int(a.interp)}
    raise UserError(f"export: test augmentation {type(a).__name__} cannot be described for a runtime "
                    "(supported: ResizeShortestEdge, YOLOXTestResize, Resize)")


def build_test_augmentations(meta: ExportMetadata) -> list:
    """The Detectron2 augmentations equal to the exported config's test mapper's."""
    from ..data.transforms import YOLOXTestResize

    d = meta.test_resize if isinstance(meta, ExportMetadata) else meta
    kind = d["kind"]
    if kind == "none":
        return []
    if kind == "shortest_edge":
        kw = {"interp": d["interp"]} if "interp" in d else {}
        return [T.ResizeShortestEdge(d["short_edge_length"], d["max_size"], d.get("sample_style", "choice"), **kw)]
    if kind == "yolox":
        return [YOLOXTestResize(tuple(d["size"]), pre_resize=d.get("pre_resize", True))]
    if kind == "fixed":
        kw = {"interp": d["interp"]} if "interp" in d else {}
        return [T.Resize((d["height"], d["width"]), **kw)]
    raise UserError(f"export metadata: unknown test_resize kind {kind!r}")
