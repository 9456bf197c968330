"""YOLOX-M on COCO 2017: ``yolox_s_coco.py`` (the reference's recipe) at size m.
Converted official weights: ``python tools/convert_weights.py yolox yolox_m.pth out.pth``."""
from ..common.models.yolox import yolox_size
from .yolox_s_coco import dataloader, lr_multiplier, model, optimizer, train

yolox_size(model, "m")
