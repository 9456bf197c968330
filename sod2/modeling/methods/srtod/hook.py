"""
Meta-architectures that feed SR-TOD's hook (:class:`~sod2.modeling.backbone.ReconstructionFPN`):
the network-input image (after resize and flip) as RGB in [0, 1], zero-padded exactly like
the batched input, and the reconstruction loss added to the detector's losses.

Each is Detectron2's class (through sod2's :class:`SOD2GeneralizedRCNN` /
:class:`SOD2RetinaNet`, which warn about non-finite input pixels) with
:class:`ReconstructionTargetMixin` in front: nothing of the detector is copied.
"""
from __future__ import annotations

from typing import Dict, List

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList

from .reconstruction import ReconstructionFPN
from ...meta_arch.detectron2_checked import SOD2GeneralizedRCNN, SOD2RetinaNet

__all__ = ["ReconstructionTargetMixin", "SRTODRCNN", "SRTODRetinaNet"]


class ReconstructionTargetMixin:
    """Runs the detector's ``forward`` inside :meth:`ReconstructionFPN.bind` with the
    reconstruction target, and adds the hook's ``loss_rec`` in training. The backbone must
    be a :class:`ReconstructionFPN` (checked at construction)."""

    backbone: ReconstructionFPN

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.backbone, ReconstructionFPN):
            raise TypeError(f"{type(self).__name__} needs a ReconstructionFPN backbone (SR-TOD's hook), "
                            f"got {type(self.backbone).__name__}; use the plain detector without SR-TOD")

    def reconstruction_target(self, batched_inputs: List[Dict]) -> torch.Tensor:
        """(N, 3, H, W): each input image as RGB / 255, zero-padded like the batch."""
        raw = []
        for x in batched_inputs:
            img = self._move_to_current_device(x["image"]).float() / 255.0
            raw.append(img.flip(0) if self.input_format == "BGR" else img)
        return ImageList.from_tensors(raw, self.backbone.size_divisibility, pad_value=0.0,
                                      padding_constraints=self.backbone.padding_constraints).tensor

    def forward(self, batched_inputs: List[Dict]):
        if not self.backbone.enabled:
            return super().forward(batched_inputs)
        with self.backbone.bind(self.reconstruction_target(batched_inputs)) as record:
            out = super().forward(batched_inputs)
        if self.training:
            out.update(record.losses)
        return out


@META_ARCH_REGISTRY.register()
class SRTODRCNN(ReconstructionTargetMixin, SOD2GeneralizedRCNN):
    """GeneralizedRCNN (Faster/Cascade R-CNN, CFINet) with SR-TOD's hook as its backbone."""


@META_ARCH_REGISTRY.register()
class SRTODRetinaNet(ReconstructionTargetMixin, SOD2RetinaNet):
    """RetinaNet with SR-TOD's hook (on P3) as its backbone."""
