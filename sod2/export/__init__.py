"""
Export of sod2 detectors (issue "Deployment"): ``tools/export_model.py`` writes ``model.onnx``
(or ``model.pt`` for TorchScript) and ``model.json`` (:class:`~sod2.export.metadata.ExportMetadata`).

Importing this package needs neither onnx nor onnxruntime (the optional ``export`` extra);
the exporter modules import them when they run. :mod:`sod2.export.parity` compares an export
with its PyTorch model (the tests, ``tools/check_export_parity.py``, ``tools/gpu_check.sh``).
"""
from .metadata import ExportMetadata, build_test_augmentations, describe_test_augmentations  # noqa: F401
