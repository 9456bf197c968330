"""RetinaNet R50-FPN without SR-TOD (the plain twin of ``retinanet_srtod_R50_fpn_aitod_1x.py``):
data and schedule of the Faster R-CNN twin ``faster_rcnn_srtod_plain_R50_fpn_aitod_1x.py``."""
from ..common.models.retinanet_fpn_p3 import model
from ..common.models.limits import set_detections_per_image
from .faster_rcnn_srtod_plain_R50_fpn_aitod_1x import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_plain_R50_fpn_aitod_1x import model as _twin

model.num_classes = _twin.roi_heads.num_classes
# the official RetinaNet: 3000 candidates per level before NMS, 3000 detections
set_detections_per_image(model, 3000, candidates=3000)
