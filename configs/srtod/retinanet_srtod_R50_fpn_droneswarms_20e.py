"""RetinaNet R50-FPN with SR-TOD on DroneSwarms: reconstruction from P3 (one more Up), learnable
difference threshold, DGFE. Data, schedule and initial threshold are those of the Faster R-CNN
twin ``faster_rcnn_srtod_R50_fpn_droneswarms_20e.py``. Without SR-TOD: ``model.backbone.enabled=False``."""
from ..common.models.retinanet_fpn_p3 import model
from ..common.models.srtod import with_srtod
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import model as _twin

model.num_classes = _twin.roi_heads.num_classes
with_srtod(model, threshold=_twin.backbone.threshold.init)
