"""Faster R-CNN R50-FPN (P2-P6, small anchors) on AI-TOD, 1x schedule (12 epochs, steps
at 8 and 11), from ImageNet weights: the small-object baseline of sod2."""
from ..common.data.aitod import NUM_TRAIN_IMAGES, dataloader
from ..common.models.faster_rcnn_fpn_p2 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import epoch_schedule
from ..common.train import train

model.roi_heads.num_classes = 8
dataloader.train.total_batch_size = 8
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
iters_per_epoch = NUM_TRAIN_IMAGES // dataloader.train.total_batch_size
lr_multiplier = epoch_schedule(12, [8, 11], iters_per_epoch)
train.max_iter = 12 * iters_per_epoch
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter // 12
