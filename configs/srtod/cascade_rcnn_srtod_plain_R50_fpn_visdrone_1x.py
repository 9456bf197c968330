"""Cascade R-CNN R50-FPN without SR-TOD (the plain twin of
``cascade_rcnn_srtod_R50_fpn_visdrone_1x.py``): the Faster R-CNN twin
``faster_rcnn_srtod_plain_R50_fpn_visdrone_1x.py`` (data, schedule) with the three cascade
stages of ``common/models/cascade_rcnn_fpn_p2.py``."""
from ..common.models.cascade_rcnn_fpn_p2 import model as _cascade
from ..common.models.limits import set_detections_per_image
from .faster_rcnn_srtod_plain_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

_cascade.roi_heads.num_classes = model.roi_heads.num_classes
model.roi_heads = _cascade.roi_heads
set_detections_per_image(model, 3000)  # as the official code
