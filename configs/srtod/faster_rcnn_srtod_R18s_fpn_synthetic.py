"""Faster R-CNN with SR-TOD on the embedded synthetic dataset (small ResNet-FPN from scratch, the
synthetic config's schedule); the difference threshold starts at 16/255, above the images'
sensor noise (sigma 8/255). Without SR-TOD (the baseline detector itself):
``model.feature_hook=null``."""
from ..common.models.srtod import hook as _hook
from ..baselines.faster_rcnn_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.feature_hook = _hook
model.feature_hook.threshold.init = 16 / 255
