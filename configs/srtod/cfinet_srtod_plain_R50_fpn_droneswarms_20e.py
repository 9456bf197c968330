"""CFINet (CRPN + feature imitation) R50-FPN without SR-TOD (the plain twin of
``cfinet_srtod_R50_fpn_droneswarms_20e.py``): data and schedule of the Faster R-CNN twin
``faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e.py``."""
from sod2.modeling.methods.cfinet import CFINetRCNN, FeatureImitationROIHeads

from ..common.models.cfinet import cfinet as _cfinet
from ..common.models.cfinet import imitation_mlp_lr, model
from .faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_plain_R50_fpn_droneswarms_20e import model as _twin

model.roi_heads.num_classes = _twin.roi_heads.num_classes
model._target_ = CFINetRCNN
model.roi_heads._target_ = FeatureImitationROIHeads
model.cfinet = _cfinet
imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code
