"""Foreground Probing (K = 500, learnable gate) on YOLOX-X (P2-P5, CIoU) on VisDrone2019-DET, as the
paper (960 px training, 1504 px test, 100 epochs): its plain twin
``fgprobe_plain_yolox_x_p2_visdrone.py`` (data, schedule, weights) plus the probe. Off (= the
plain twin): ``model.probe=null``.
Ablations: ``model.probe.num_tokens=100|300|700``, ``model.probe.gate=0.3|0.5|0.7`` (fixed
lambda)."""
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ..common.models.fgprobe import probe as _probe
from .fgprobe_plain_yolox_x_p2_visdrone import dataloader, lr_multiplier, model, optimizer, train

model._target_ = FGProbeYOLOX
model.probe = _probe
model.probe.num_tokens = 500
model.head = model.pop("head")  # built after the probe (as when it sat in the head): same seed, same init
