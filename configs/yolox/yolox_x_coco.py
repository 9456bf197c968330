"""YOLOX-X on COCO 2017: ``yolox_s_coco.py`` (the reference's recipe) at size x.
Converted official weights: ``python tools/convert_weights.py yolox yolox_x.pth out.pth``."""
from ..common.models.yolox import yolox_size
from .yolox_s_coco import dataloader, lr_multiplier, model, optimizer, train

yolox_size(model, "x")
