"""Faster R-CNN R50-FPN (P2-P6, small anchors) on SODA-D (patches), 1x schedule (12 epochs, steps
at 8 and 11), from ImageNet weights: the small-object baseline of sod2."""
from ..common.data.sodad_patches import dataloader
from ..common.models.faster_rcnn_fpn_p2 import model
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train
from ..common.models.limits import set_detections_per_image

model.roi_heads.num_classes = 9
# 100 detections per 800 px patch, as CFINet (the whole-image merge keeps up to
# patches x 100 for the SODA-D protocol's maxDets 100/300/1000)
set_detections_per_image(model, 100)
dataloader.train.total_batch_size = 8
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
# 12 epochs: set train.max_iter (and the steps at 8/12 and 11/12 of it) from the number
# of training images of your split; 90k iterations at batch 8 by default
train.max_iter = 90000
lr_multiplier = step_schedule(train.max_iter, [60000, 82500])
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter // 12
