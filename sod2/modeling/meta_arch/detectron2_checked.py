"""
Detectron2's ``GeneralizedRCNN`` and ``RetinaNet`` with sod2's input check: one warning line
when a batch holds NaN or infinite pixels (:func:`sod2.modeling.checks.warn_non_finite_images`,
in training and at inference). Nothing else differs: same arguments, same weights, same
outputs. sod2's configs build these (Faster/Cascade R-CNN, CFINet, RetinaNet; SR-TOD's
:class:`SRTODRCNN` / :class:`SRTODRetinaNet` derive from them), so every model that a config
builds checks its input, whichever tool builds it (trainer, ``instantiate(cfg.model)``,
demo, benchmark).
"""
from __future__ import annotations

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, RetinaNet

from ..checks import NonFiniteInputCheckMixin

__all__ = ["SOD2GeneralizedRCNN", "SOD2RetinaNet"]


@META_ARCH_REGISTRY.register()
class SOD2GeneralizedRCNN(NonFiniteInputCheckMixin, GeneralizedRCNN):
    """Detectron2's ``GeneralizedRCNN`` whose ``preprocess_image`` warns about non-finite
    input pixels."""


@META_ARCH_REGISTRY.register()
class SOD2RetinaNet(NonFiniteInputCheckMixin, RetinaNet):
    """Detectron2's ``RetinaNet`` whose ``preprocess_image`` warns about non-finite input
    pixels."""
