"""Faster R-CNN R50-FPN with SR-TOD on AI-TOD: reconstruction from P2, learnable
difference threshold initialised at 3 / 255, DGFE; SGD lr 0.005, batch 2, 12 epochs (steps at
8 and 11), 500 warm-up iterations from 0.001, from ImageNet weights.
Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from ..common.models.srtod import hook as _hook
from .faster_rcnn_srtod_plain_R50_fpn_aitod_1x import dataloader, lr_multiplier, model, optimizer, train

model.feature_hook = _hook
model.feature_hook.threshold.init = 3 / 255
