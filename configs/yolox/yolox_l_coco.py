"""YOLOX-L on COCO 2017: ``yolox_s_coco.py`` (the reference's recipe) at size l.
Converted official weights: ``python tools/convert_weights.py yolox yolox_l.pth out.pth``."""
from ..common.models.yolox import yolox_size
from .yolox_s_coco import dataloader, lr_multiplier, model, optimizer, train

yolox_size(model, "l")
