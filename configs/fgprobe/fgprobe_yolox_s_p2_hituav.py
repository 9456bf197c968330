"""Foreground Probing (K = 500, learnable gate) on YOLOX-S (P2-P5, CIoU) on HIT-UAV: its plain twin
``fgprobe_plain_yolox_s_p2_hituav.py`` (data, schedule, weights) plus the probe. Off (= the plain
twin): ``model.probe=null``."""
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ..common.models.fgprobe import probe as _probe
from .fgprobe_plain_yolox_s_p2_hituav import dataloader, lr_multiplier, model, optimizer, train

model._target_ = FGProbeYOLOX
model.probe = _probe
model.probe.num_tokens = 500
model.head = model.pop("head")  # built after the probe (as when it sat in the head): same seed, same init
