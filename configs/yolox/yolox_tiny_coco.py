"""YOLOX-Tiny on COCO 2017: ``yolox_s_coco.py`` at size tiny with the reference's Tiny
overrides: 416 px (train, and the official test path at 416), multi-scale 320-640, Mosaic
scale 0.5-1.5, no MixUp.
Converted official weights: ``python tools/convert_weights.py yolox yolox_tiny.pth out.pth``."""
from ..common.models.yolox import yolox_size
from ..common.recipes.yolox import yolox_test_resize
from .yolox_s_coco import dataloader, lr_multiplier, model, optimizer, train

INPUT_SIZE = 416

yolox_size(model, "tiny")
yolox_test_resize(dataloader, model, INPUT_SIZE)
dataloader.train.dataset.mosaic_scale = (0.5, 1.5)
dataloader.train.dataset.enable_mixup = False
train.multiscale.input_size = [INPUT_SIZE, INPUT_SIZE]
train.multiscale.size_range = [320, 640]  # random_size (10, 20) x 32
