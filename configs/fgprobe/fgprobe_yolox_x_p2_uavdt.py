"""Foreground Probing (K = 500, learnable gate) on YOLOX-X (P2-P5, CIoU) on UAVDT, as the paper (1286
px test): its plain twin ``fgprobe_plain_yolox_x_p2_uavdt.py`` (data, schedule, weights) plus the
probe. Off (= the plain twin): ``model.probe=null``."""
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ..common.models.fgprobe import probe as _probe
from .fgprobe_plain_yolox_x_p2_uavdt import dataloader, lr_multiplier, model, optimizer, train

model._target_ = FGProbeYOLOX
model.probe = _probe
model.probe.num_tokens = 500
model.head = model.pop("head")  # built after the probe (as when it sat in the head): same seed, same init
