"""RetinaNet R50-FPN with SR-TOD on DroneSwarms: reconstruction from P3 (one more Up), learnable
difference threshold, DGFE. Data, schedule and initial threshold are those of the Faster R-CNN
twin ``faster_rcnn_srtod_R50_fpn_droneswarms_20e.py``. Without SR-TOD (the baseline detector
itself): ``model.feature_hook=null``."""
from ..common.models.srtod import hook_p3 as _hook_p3
from .retinanet_srtod_plain_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, model, optimizer, train
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import model as _twin

model.feature_hook = _hook_p3
model.feature_hook.threshold.init = _twin.feature_hook.threshold.init
