"""SR-TOD (ECCV 2024) as config nodes for the feature-hook slot of sod2's Detectron2 detectors
(sod2.modeling.methods.srtod; projects/SR-TOD/README.md).

A method config takes its baseline and adds the hook, nothing else::

    from ..common.models.srtod import hook as _hook  # hook_p3: RetinaNet (no P2: P3, one more Up)
    from ..baselines.faster_rcnn_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

    model.feature_hook = _hook
    model.feature_hook.threshold.init = 16 / 255    # t: 4/255 VisDrone, 3/255 AI-TOD, 40/255 DroneSwarms

Off (the baseline detector itself): ``model.feature_hook=null``. Paper defaults; the official
code's zero-gradient threshold is ``model.feature_hook.threshold.grad="zero"``. The hook's
channels follow the detector's ``model.backbone.out_channels``.
"""
import copy

from detectron2.config import LazyCall as L

from sod2.modeling.methods.srtod import DGFE, SRTOD, LearnableThreshold, ReconstructionHead

hook = L(SRTOD)(
    level="p2",
    head=L(ReconstructionHead)(in_channels="${...backbone.out_channels}", num_up=2),
    threshold=L(LearnableThreshold)(init=4 / 255, grad="surrogate", tau=0.01, grad_to_difference=False,
                                    grad_scale="sqrt"),
    dgfe=L(DGFE)(channels="${...backbone.out_channels}", ratio=16, mode="attention"),
    loss_weight=1.0,
    difference="pixel",
)

# RetinaNet-style detectors (P3-P7): reconstruct from P3, with one more Up
hook_p3 = copy.deepcopy(hook)
hook_p3.level = "p3"
hook_p3.head.num_up = 3
