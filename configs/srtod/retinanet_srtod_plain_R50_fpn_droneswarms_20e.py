"""RetinaNet R50-FPN without SR-TOD (the plain twin of
``retinanet_srtod_R50_fpn_droneswarms_20e.py``): data and schedule of the Faster R-CNN twin
``faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e.py``."""
from ..common.models.retinanet_fpn_p3 import model
from .faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e import model as _twin

model.num_classes = _twin.roi_heads.num_classes
