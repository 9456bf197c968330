"""Foreground Probing on sod2's YOLOX: sparse token selection and foreground refinement."""
from .probe import ForegroundProbe  # noqa: F401
