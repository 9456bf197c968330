"""Faster R-CNN R50-FPN without SR-TOD (the plain twin of
``faster_rcnn_srtod_R50_fpn_droneswarms_20e.py``) on DroneSwarms: the SR-TOD paper's detector
settings; SGD lr 0.0025, batch 2, 20 epochs (steps at 16 and 19), 500 warm-up iterations from
0.001, from ImageNet weights."""
from ..common.data.droneswarms import NUM_TRAIN_IMAGES, dataloader
from ..common.models.faster_rcnn_fpn_p2 import model
from ..common.models.limits import set_detections_per_image
from ..common.optim import SGD as optimizer
from ..common.schedules import epoch_schedule
from ..common.train import train

model.roi_heads.num_classes = 1
# anchor scale 2 (x stride), ratios 0.5/1/2, as SR-TOD's DroneSwarms config
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64], [128]]
model.proposal_generator.pre_nms_topk = (2000, 1000)
model.proposal_generator.post_nms_topk = (1000, 1000)
set_detections_per_image(model, 100)  # proposals and detections as the official config
dataloader.train.total_batch_size = 2
optimizer.lr = 0.0025
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
iters_per_epoch = NUM_TRAIN_IMAGES // dataloader.train.total_batch_size
train.max_iter = 20 * iters_per_epoch
lr_multiplier = epoch_schedule(20, [16, 19], iters_per_epoch, warmup_iters=500, warmup_factor=0.001)
train.eval_period = train.max_iter
train.checkpointer.period = iters_per_epoch
