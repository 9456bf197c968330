"""Foreground Probing on YOLOX-Tiny (P2-P5, CIoU) on the embedded synthetic dataset, trained from
scratch on a CPU (``make fgprobe-demo``); K = 100 tokens (the images hold ~20-60 objects): its
plain twin ``fgprobe_plain_yolox_tiny_p2_synthetic.py`` (data, schedule, weights) plus the probe.
Off (= the plain twin): ``model.probe=null``."""
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ..common.models.fgprobe import probe as _probe
from .fgprobe_plain_yolox_tiny_p2_synthetic import dataloader, lr_multiplier, model, optimizer, train

model._target_ = FGProbeYOLOX
model.probe = _probe
model.probe.num_tokens = 100
model.head = model.pop("head")  # built after the probe (as when it sat in the head): same seed, same init
