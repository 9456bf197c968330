"""Foreground Probing on sod2's YOLOX: sparse token selection and foreground refinement."""
from .probe import ForegroundProbe  # noqa: F401
from .model import FGProbeYOLOX  # noqa: F401  (registers FGProbeYOLOX in META_ARCH_REGISTRY)
