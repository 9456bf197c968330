"""Optimisation pieces not in Detectron2: learning-rate schedules (:mod:`.lr_schedule`),
gradient clipping inside the optimizer and a learning-rate factor by name (:mod:`.grad_clip`)."""
from .grad_clip import (ClipGradNormMixin, ClippedAdam, ClippedAdamW, ClippedSGD,  # noqa: F401
                        LRFactorByPrefix, clipped_optimizer_class, with_grad_clip)
from .lr_schedule import WarmupCosineNoAugParamScheduler  # noqa: F401

__all__ = ["WarmupCosineNoAugParamScheduler", "ClipGradNormMixin", "ClippedAdamW", "ClippedAdam", "ClippedSGD",
           "clipped_optimizer_class", "with_grad_clip", "LRFactorByPrefix"]
