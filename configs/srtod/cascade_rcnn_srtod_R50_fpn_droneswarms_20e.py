"""Cascade R-CNN R50-FPN with SR-TOD on DroneSwarms: its Faster R-CNN twin
(``faster_rcnn_srtod_R50_fpn_droneswarms_20e.py``: reconstruction from P2, learnable difference threshold
initialised at 40 / 255, DGFE; SGD lr 0.0025, batch 2, 20 epochs (steps at
16 and 19), 500 warm-up iterations from 0.001, from ImageNet
weights) with the three cascade stages of ``common/models/cascade_rcnn_fpn_p2.py``.
Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from ..common.models.cascade_rcnn_fpn_p2 import model as _cascade
from ..common.models.limits import set_detections_per_image
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, model, optimizer, train

_cascade.roi_heads.num_classes = model.roi_heads.num_classes
model.roi_heads = _cascade.roi_heads
# the official Cascade R-CNN keeps 2000 training proposals; 100 detections as the Faster twin
model.proposal_generator.post_nms_topk = (2000, 1000)
set_detections_per_image(model, 100)
