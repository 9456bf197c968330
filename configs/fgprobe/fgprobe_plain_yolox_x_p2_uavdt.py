"""The plain twin of ``fgprobe_yolox_x_p2_uavdt.py`` (``model.head.probe=None``)."""
from .fgprobe_yolox_x_p2_uavdt import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None
