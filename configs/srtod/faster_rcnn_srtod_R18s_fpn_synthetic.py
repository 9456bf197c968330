"""Faster R-CNN with SR-TOD on the embedded synthetic dataset (small ResNet-FPN from scratch, the
synthetic config's schedule); the difference threshold starts at 16/255, above the images'
sensor noise (sigma 8/255). Without SR-TOD: ``model.backbone.enabled=False``."""
from ..common.models.srtod import with_srtod
from ..baselines.faster_rcnn_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

with_srtod(model, threshold=16 / 255)
