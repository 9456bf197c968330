"""Foreground Probing ("Unmasking the Tiny: Foreground Probing for Small Object Detection") on
sod2's YOLOX: sparse token selection (STSM) and foreground refinement (FRM) as the head's
``probe``. Numbers and their sources in projects/ForegroundProbing/README.md.

``with_fgprobe(model)`` turns a YOLOX model config into the paper's detector: the probe on
the head (K = 500 tokens, learnable gate), the 4-scale head (P2-P5) and the CIoU loss.
Its plain twin is one override: ``model.head.probe=None`` (same P2 head and CIoU loss).
Ablations: ``model.head.probe.num_tokens=100|300|500|700``; ``model.head.probe.gate=0.3|0.5|0.7``
(fixed lambda); ``model.head.probe.inference=tokens_only``; ``model.head.probe.target=iou``.
"""
import copy

from detectron2.config import LazyCall as L

from sod2.modeling.methods.fgprobe import ForegroundProbe

probe = L(ForegroundProbe)(
    cls_dim="${..feat_channels}",
    reg_dim="${..feat_channels}",
    num_tokens=500,
    key_dim=128,  # d_k, d_v: not given by the paper
    value_dim=128,
    gate="learnable",
    loss_weight=1.0,  # lambda_ref: not given by the paper
    target="assignment",  # y_ref = 1 for SimOTA positives
    iou_thresh=0.5,
    inference="replace",
)


def with_fgprobe(model, num_tokens: int = 500, p2: bool = True):
    """Add Foreground Probing to a YOLOX model config (in place; returns it): the probe,
    the CIoU loss of the paper and, with ``p2``, the 4-scale head (strides 4-32)."""
    model.head.probe = copy.deepcopy(probe)
    model.head.probe.num_tokens = num_tokens
    model.iou_loss_type = "ciou"
    if p2:
        model.backbone.in_features = ["dark2", "dark3", "dark4", "dark5"]
    return model
