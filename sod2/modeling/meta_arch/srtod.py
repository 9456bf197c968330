"""
Meta-architectures that feed SR-TOD's hook (:class:`~sod2.modeling.backbone.ReconstructionFPN`):
the network-input image (after resize and flip) as RGB in [0, 1], zero-padded exactly like
the batched input, and the reconstruction loss added to the detector's losses.

Each is Detectron2's class with :class:`ReconstructionTargetMixin` in front: nothing of the
detector is copied, and any backbone without the hook works unchanged.
"""
from __future__ import annotations

from typing import Dict, List

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, RetinaNet
from detectron2.structures import ImageList

__all__ = ["ReconstructionTargetMixin", "SRTODRCNN", "SRTODRetinaNet"]


class ReconstructionTargetMixin:
    """Override ``preprocess_image`` (to hand the target to the backbone) and ``forward``
    (to add the backbone's ``loss_rec``)."""

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = super().preprocess_image(batched_inputs)
        if hasattr(self.backbone, "set_target") and getattr(self.backbone, "enabled", True):
            raw = []
            for x in batched_inputs:
                img = self._move_to_current_device(x["image"]).float() / 255.0
                raw.append(img.flip(0) if self.input_format == "BGR" else img)
            target = ImageList.from_tensors(raw, self.backbone.size_divisibility, pad_value=0.0,
                                            padding_constraints=self.backbone.padding_constraints)
            self.backbone.set_target(target.tensor)
        return images

    def forward(self, batched_inputs: List[Dict]):
        out = super().forward(batched_inputs)
        if self.training and hasattr(self.backbone, "pop_losses"):
            out.update(self.backbone.pop_losses())
        return out


@META_ARCH_REGISTRY.register()
class SRTODRCNN(ReconstructionTargetMixin, GeneralizedRCNN):
    """GeneralizedRCNN (Faster/Cascade R-CNN, CFINet) with SR-TOD's hook in its backbone."""


@META_ARCH_REGISTRY.register()
class SRTODRetinaNet(ReconstructionTargetMixin, RetinaNet):
    """RetinaNet with SR-TOD's hook (on P3) in its backbone."""
