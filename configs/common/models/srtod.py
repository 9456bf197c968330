"""SR-TOD's FPN hook (ECCV 2024) as a LazyCall to wrap any FPN-style backbone:

    model._target_ = SRTODRCNN (or SRTODRetinaNet)
    hook.fpn = model.backbone
    model.backbone = hook

``model.backbone.enabled = False`` is the same detector without SR-TOD (one override).
Paper defaults; the official code's zero-gradient threshold is ``threshold.grad="zero"``.
"""
from detectron2.config import LazyCall as L

from sod2.modeling.backbone import DGFE, LearnableThreshold, ReconstructionFPN, ReconstructionHead

hook = L(ReconstructionFPN)(
    fpn=None,
    level="p2",
    head=L(ReconstructionHead)(in_channels="${..fpn.out_channels}", num_up=2),
    threshold=L(LearnableThreshold)(init=4 / 255, grad="surrogate", tau=0.01, grad_to_difference=False,
                                    grad_scale="sqrt"),
    dgfe=L(DGFE)(channels="${..fpn.out_channels}", ratio=16, mode="attention"),
    loss_weight=1.0,
    difference="pixel",
    enabled=True,
    pixel_mean="${..pixel_mean}",
    pixel_std="${..pixel_std}",
    input_format="${..input_format}",
    out_channels="${.fpn.out_channels}",
)
