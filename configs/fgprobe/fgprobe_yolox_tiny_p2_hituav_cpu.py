"""Foreground Probing (K = 100 tokens) on YOLOX-Tiny (P2-P5, CIoU) on the real HIT-UAV thermal images
within a CPU budget (200 iterations; not converged accuracy): its plain twin
``fgprobe_plain_yolox_tiny_p2_hituav_cpu.py`` (data, schedule, weights) plus the probe. Off (= the
plain twin): ``model.probe=null``."""
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ..common.models.fgprobe import probe as _probe
from .fgprobe_plain_yolox_tiny_p2_hituav_cpu import dataloader, lr_multiplier, model, optimizer, train

model._target_ = FGProbeYOLOX
model.probe = _probe
model.probe.num_tokens = 100
model.head = model.pop("head")  # built after the probe (as when it sat in the head): same seed, same init
