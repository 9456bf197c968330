"""The plain twin of ``fgprobe_yolox_tiny_p2_hituav_cpu.py`` (``model.head.probe=None``)."""
from .fgprobe_yolox_tiny_p2_hituav_cpu import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None
