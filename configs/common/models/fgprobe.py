"""Foreground Probing ("Unmasking the Tiny: Foreground Probing for Small Object Detection") on
sod2's YOLOX: sparse token selection (STSM) and foreground refinement (FRM) on the head's last
branch features. Numbers and their sources in projects/ForegroundProbing/README.md.

A method config is its plain twin (configs/fgprobe/fgprobe_plain_*: YOLOX with the paper's
4-scale head and CIoU loss) plus two lines::

    model._target_ = FGProbeYOLOX
    model.probe = probe   # `from ..common.models.fgprobe import probe as _probe` in a config

Off (= its plain YOLOX twin): ``model.probe=null``. Ablations:
``model.probe.num_tokens=100|300|500|700``; ``model.probe.gate=0.3|0.5|0.7`` (fixed lambda);
``model.probe.inference=tokens_only``; ``model.probe.target=iou``.
"""
from detectron2.config import LazyCall as L

from sod2.modeling.methods.fgprobe import ForegroundProbe

probe = L(ForegroundProbe)(
    cls_dim="${..head.feat_channels}",  # the head's width (model.head.feat_channels)
    reg_dim="${..head.feat_channels}",
    num_tokens=500,
    key_dim=128,  # d_k, d_v: not given by the paper
    value_dim=128,
    gate="learnable",
    loss_weight=1.0,  # lambda_ref: not given by the paper
    target="assignment",  # y_ref = 1 for SimOTA positives
    iou_thresh=0.5,
    inference="replace",
)
