"""RetinaNet R50-FPN with SR-TOD on AI-TOD: reconstruction from P3 (one more Up), learnable
difference threshold, DGFE. Data, schedule and initial threshold are those of the Faster R-CNN
twin ``faster_rcnn_srtod_R50_fpn_aitod_1x.py``. Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from ..common.models.retinanet_fpn_p3 import model
from ..common.models.limits import set_detections_per_image
from ..common.models.srtod import hook_p3 as _hook_p3
from .faster_rcnn_srtod_R50_fpn_aitod_1x import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_R50_fpn_aitod_1x import model as _twin

model.num_classes = _twin.roi_heads.num_classes
# the official RetinaNet: 3000 candidates per level before NMS, 3000 detections
set_detections_per_image(model, 3000, candidates=3000)
model.feature_hook = _hook_p3
model.feature_hook.threshold.init = _twin.feature_hook.threshold.init
