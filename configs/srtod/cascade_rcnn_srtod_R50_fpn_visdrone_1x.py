"""Cascade R-CNN R50-FPN with SR-TOD on VisDrone2019-DET: its Faster R-CNN twin
(``faster_rcnn_srtod_R50_fpn_visdrone_1x.py``: reconstruction from P2, learnable difference threshold
initialised at 4 / 255, DGFE; SGD lr 0.005, batch 2, 12 epochs (steps at
8 and 11), 500 warm-up iterations from 0.001, from ImageNet
weights) with the three cascade stages of ``common/models/cascade_rcnn_fpn_p2.py``.
Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from ..common.models.cascade_rcnn_fpn_p2 import model as _cascade
from ..common.models.limits import set_detections_per_image
from .faster_rcnn_srtod_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

_cascade.roi_heads.num_classes = model.roi_heads.num_classes
model.roi_heads = _cascade.roi_heads
set_detections_per_image(model, 3000)  # as the official code
