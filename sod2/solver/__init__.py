"""Optimisation pieces not in Detectron2: learning-rate schedules (:mod:`.lr_schedule`)."""
from .lr_schedule import WarmupCosineNoAugParamScheduler  # noqa: F401

__all__ = ["WarmupCosineNoAugParamScheduler"]
