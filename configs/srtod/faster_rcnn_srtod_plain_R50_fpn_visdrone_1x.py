"""Faster R-CNN R50-FPN without SR-TOD (the plain twin of
``faster_rcnn_srtod_R50_fpn_visdrone_1x.py``) on VisDrone2019-DET: the SR-TOD paper's detector
settings; SGD lr 0.005, batch 2, 12 epochs (steps at 8 and 11), 500 warm-up iterations from
0.001, from ImageNet weights."""
from ..common.data.visdrone import NUM_TRAIN_IMAGES, dataloader
from ..common.models.faster_rcnn_fpn_p2 import model
from ..common.models.limits import set_detections_per_image
from ..common.optim import SGD as optimizer
from ..common.schedules import epoch_schedule
from ..common.train import train

model.roi_heads.num_classes = 10
# anchor scale 6 (x stride), ratios 0.5/1/2, as SR-TOD's VisDrone2019-DET config
model.proposal_generator.anchor_generator.sizes = [[24], [48], [96], [192], [384]]
model.proposal_generator.pre_nms_topk = (3000, 3000)
model.proposal_generator.post_nms_topk = (3000, 3000)
set_detections_per_image(model, 3000)  # dense scenes: 3000, as the official code
dataloader.train.total_batch_size = 2
optimizer.lr = 0.005
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
iters_per_epoch = NUM_TRAIN_IMAGES // dataloader.train.total_batch_size
train.max_iter = 12 * iters_per_epoch
lr_multiplier = epoch_schedule(12, [8, 11], iters_per_epoch, warmup_iters=500, warmup_factor=0.001)
train.eval_period = train.max_iter
train.checkpointer.period = iters_per_epoch
