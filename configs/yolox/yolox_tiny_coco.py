"""YOLOX-Tiny on COCO 2017 (80 classes), the reference's settings: 416 px letterboxed input
(BGR 0-255, padded to a 416x416 square with 114), score threshold 0.01, NMS 0.65; SGD
(Nesterov, lr 0.01 per 64 images, weight decay 5e-4 on weights only) with YOLOX's warm-up +
cosine schedule over 300 epochs (5 warm-up, 15 without augmentation and with the L1 loss).
Converted official weights: ``python tools/convert_weights.py yolox yolox_tiny.pth out.pth``
then ``train.init_checkpoint=out.pth``."""
from ..common.data.coco import dataloader, set_input_size
from ..common.models.yolox import model, yolox_size
from ..common.optim import SGD as optimizer
from ..common.schedules import warmcos_epoch_schedule
from ..common.train import train

INPUT_SIZE = 416
ITERS_PER_EPOCH = 118287 // 64  # COCO train2017 at batch 64

yolox_size(model, "tiny")
model.num_classes = 80
model.backbone.square_pad = INPUT_SIZE
set_input_size(dataloader, INPUT_SIZE)

optimizer.lr = 0.01
optimizer.momentum = 0.9
optimizer.nesterov = True
optimizer.weight_decay = 5e-4
optimizer.params.weight_decay_bias = 0.0
lr_multiplier = warmcos_epoch_schedule(300, ITERS_PER_EPOCH, warmup_epochs=5, no_aug_epochs=15)

train.max_iter = 300 * ITERS_PER_EPOCH
train.eval_period = 10 * ITERS_PER_EPOCH
train.checkpointer.period = 10 * ITERS_PER_EPOCH
train.output_dir = "./output/yolox_tiny_coco"
