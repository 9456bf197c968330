"""The plain twin of ``fgprobe_yolox_s_p2_hituav.py`` (``model.head.probe=None``)."""
from .fgprobe_yolox_s_p2_hituav import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None
