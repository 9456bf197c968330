"""Cascade R-CNN R50-FPN without SR-TOD (the plain twin of
``cascade_rcnn_srtod_R50_fpn_droneswarms_20e.py``): the Faster R-CNN twin
``faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e.py`` (data, schedule) with the three cascade
stages of ``common/models/cascade_rcnn_fpn_p2.py``."""
from ..common.models.cascade_rcnn_fpn_p2 import model as _cascade
from ..common.models.limits import set_detections_per_image
from .faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, model, optimizer, train

_cascade.roi_heads.num_classes = model.roi_heads.num_classes
model.roi_heads = _cascade.roi_heads
# the official Cascade R-CNN keeps 2000 training proposals; 100 detections as the Faster twin
model.proposal_generator.post_nms_topk = (2000, 1000)
set_detections_per_image(model, 100)
