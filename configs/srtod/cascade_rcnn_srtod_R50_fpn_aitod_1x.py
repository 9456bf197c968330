"""Cascade R-CNN R50-FPN with SR-TOD on AI-TOD: its Faster R-CNN twin
(``faster_rcnn_srtod_R50_fpn_aitod_1x.py``: reconstruction from P2, learnable difference threshold
initialised at 3 / 255, DGFE; SGD lr 0.005, batch 2, 12 epochs (steps at
8 and 11), 500 warm-up iterations from 0.001, from ImageNet
weights) with the three cascade stages of ``common/models/cascade_rcnn_fpn_p2.py``.
Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from ..common.models.srtod import hook as _hook
from .cascade_rcnn_srtod_plain_R50_fpn_aitod_1x import dataloader, lr_multiplier, model, optimizer, train
from .faster_rcnn_srtod_R50_fpn_aitod_1x import model as _twin

model.feature_hook = _hook
model.feature_hook.threshold.init = _twin.feature_hook.threshold.init
