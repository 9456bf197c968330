"""Dense detection heads of sod2 (not Detectron2's), registered in ``SOD2_HEAD_REGISTRY``."""
from detectron2.utils.registry import Registry

SOD2_HEAD_REGISTRY = Registry("SOD2_HEAD")
SOD2_HEAD_REGISTRY.__doc__ = """
Registry for sod2's dense heads (e.g. YOLOXHead): modules mapping a list of per-level
feature maps to per-level predictions.
"""

from .yolox_head import YOLOXHead, YOLOXHeadOutput  # noqa: E402,F401
