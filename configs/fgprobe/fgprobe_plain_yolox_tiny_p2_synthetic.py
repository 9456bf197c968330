"""The plain twin of ``fgprobe_yolox_tiny_p2_synthetic.py``: the same YOLOX (P2-P5 head, CIoU
loss), data and schedule without Foreground Probing (``model.head.probe=None``)."""
from .fgprobe_yolox_tiny_p2_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None
