"""SR-TOD's FPN hook (ECCV 2024) as a LazyCall that wraps any FPN-style backbone.

``with_srtod(model, threshold=4 / 255)`` turns a GeneralizedRCNN-style model (Faster/Cascade
R-CNN, CFINet) or a RetinaNet into its SR-TOD version: the backbone is wrapped by a copy of
``hook`` (P2; P3 with one more Up for RetinaNet) and the meta-architecture becomes
``SRTODRCNN`` / ``SRTODRetinaNet``, which hand the hook the input image.

``model.backbone.enabled = False`` is the same detector without SR-TOD (one override).
Paper defaults; the official code's zero-gradient threshold is ``threshold.grad="zero"``.
"""
import copy

from detectron2.config import LazyCall as L
from detectron2.modeling import RetinaNet

from sod2.modeling.methods.srtod import DGFE, LearnableThreshold, ReconstructionFPN, ReconstructionHead
from sod2.modeling.methods.srtod import SRTODRCNN, SRTODRetinaNet

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


def with_srtod(model, threshold: float = 4 / 255):
    """Add SR-TOD to a model config in place (and return it).

    Args:
        model: a LazyCall config of a GeneralizedRCNN (or subclass) or a RetinaNet.
        threshold: the initial difference threshold t (4/255 VisDrone, 3/255 AI-TOD,
            40/255 DroneSwarms).
    """
    h = copy.deepcopy(hook)
    if isinstance(model._target_, type) and issubclass(model._target_, RetinaNet):
        model._target_ = SRTODRetinaNet
        h.level, h.head.num_up = "p3", 3  # RetinaNet has no P2: reconstruct from P3, one more Up
    else:
        model._target_ = SRTODRCNN
    h.fpn = model.backbone
    h.threshold.init = threshold
    model.backbone = h
    return model
