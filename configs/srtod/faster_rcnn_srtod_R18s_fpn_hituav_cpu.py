"""Faster R-CNN with SR-TOD on the real HIT-UAV thermal images (CC BY 4.0, Suo et al. 2023)
within a CPU budget: its plain twin ``faster_rcnn_srtod_plain_R18s_fpn_hituav_cpu.py`` (the
synthetic configs' small ResNet-FPN from scratch, 200 training images of the public val split,
300 iterations of batch 4) with SR-TOD. Without SR-TOD (the plain twin itself):
``model.feature_hook=null``."""
from ..common.models.srtod import hook as _hook
from .faster_rcnn_srtod_plain_R18s_fpn_hituav_cpu import dataloader, lr_multiplier, model, optimizer, train

model.feature_hook = _hook
model.feature_hook.threshold.init = 8 / 255  # thermal frames: smoother than the synthetic images
