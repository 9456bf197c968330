"""YOLOX-Nano on COCO 2017: ``yolox_tiny_coco.py`` (416 px, no MixUp, Mosaic scale 0.5-1.5,
multi-scale 320-640) at size nano (depthwise convs), with Mosaic on half of the images as the
reference's Nano. Converted official weights:
``python tools/convert_weights.py yolox yolox_nano.pth out.pth``."""
from ..common.models.yolox import yolox_size
from .yolox_tiny_coco import dataloader, lr_multiplier, model, optimizer, train

yolox_size(model, "nano")
dataloader.train.dataset.mosaic_prob = 0.5
