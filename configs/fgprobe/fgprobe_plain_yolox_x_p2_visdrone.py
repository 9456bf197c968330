"""The plain twin of ``fgprobe_yolox_x_p2_visdrone.py``: YOLOX-X with the same P2-P5 head, CIoU
loss, data and schedule, without Foreground Probing (``model.head.probe=None``)."""
from .fgprobe_yolox_x_p2_visdrone import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None
