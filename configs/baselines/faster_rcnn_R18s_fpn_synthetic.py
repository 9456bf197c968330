"""Faster R-CNN with a small ResNet-FPN (P2-P6), trained from scratch on the embedded
synthetic dataset: the main job of `make demo` (2 CPU cores, < 15 minutes)."""
from ..common.data.synthetic import dataloader
from ..common.models.faster_rcnn_fpn_p2 import model
from ..common.models.small_resnet import use_small_resnet
from ..common.optim import SGD as optimizer
from ..common.schedules import step_schedule
from ..common.train import train

use_small_resnet(model)
model.roi_heads.num_classes = 3
model.roi_heads.batch_size_per_image = 128
model.roi_heads.box_head.fc_dims = [256, 256]
model.proposal_generator.pre_nms_topk = (1000, 1000)
model.proposal_generator.post_nms_topk = (300, 1000)

train.max_iter = 600
train.eval_period = 600
train.checkpointer.period = 300
optimizer.lr = 0.02
lr_multiplier = step_schedule(train.max_iter, steps=[450, 560], warmup_iters=100)
