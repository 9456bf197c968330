"""Faster R-CNN without SR-TOD (the plain twin of ``faster_rcnn_srtod_R18s_fpn_hituav_cpu.py``) on
the real HIT-UAV thermal images (CC BY 4.0, Suo et al. 2023) within a CPU budget: the synthetic
baseline's small ResNet-FPN from scratch, trained on 200 images of the public val split and
evaluated on its other 90 (AI-TOD buckets), 300 iterations of batch 4."""
from ..baselines.faster_rcnn_R18s_fpn_synthetic import model, optimizer, train
from ..common.data.hituav_cpu import dataloader
from ..common.schedules import step_schedule

model.roi_heads.num_classes = 4
train.max_iter = 300
train.eval_period = 300
train.checkpointer.period = 300
lr_multiplier = step_schedule(train.max_iter, steps=[220, 280], warmup_iters=50)
