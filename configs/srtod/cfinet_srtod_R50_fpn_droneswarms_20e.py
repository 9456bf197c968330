"""CFINet (CRPN + feature imitation) R50-FPN with SR-TOD on DroneSwarms: reconstruction from P2, learnable
difference threshold, DGFE. Data, schedule and initial threshold are those of the Faster R-CNN
twin ``faster_rcnn_srtod_R50_fpn_droneswarms_20e.py``. Without SR-TOD (the baseline detector itself): ``model.feature_hook=null``."""
from sod2.modeling.methods.cfinet import CFINetRCNN, FeatureImitationROIHeads

from ..common.models.cfinet import cfinet as _cfinet
from ..common.models.cfinet import imitation_mlp_lr, model
from ..common.models.srtod import hook as _hook
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_R50_fpn_droneswarms_20e import model as _twin

model.roi_heads.num_classes = _twin.roi_heads.num_classes
model._target_ = CFINetRCNN
model.roi_heads._target_ = FeatureImitationROIHeads
model.cfinet = _cfinet
model.feature_hook = _hook
model.feature_hook.threshold.init = _twin.feature_hook.threshold.init
imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code
