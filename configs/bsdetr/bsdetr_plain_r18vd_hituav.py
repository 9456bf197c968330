"""Plain RT-DETR-R18vd on HIT-UAV (thermal, 640x512, 4 classes; CC BY 4.0, Suo et al. 2023;
DontCare regions are ignore regions), fine-tuned from the COCO RT-DETR-R18vd weights: the
baseline of ``bsdetr_r18vd_hituav.py`` (Better Sampling). 640x640 for training and test
(aspect not kept), RT-DETR's recipe (photometric distortion, zoom-out, IoU crop, flip, resize;
multi-scale 480-800; EMA 0.9999; gradient clipping 0.1) with the Better Sampling paper's
AdamW lr 2e-4 (backbone 0.1x), 2000-iteration linear warm-up; 72 epochs at batch 16;
RT-DETR's criterion (VFL alpha 0.75 gamma 2.0). Every ``bsdetr_*_r18vd_hituav.py`` imports
this file and changes only the criterion.

Weights: the reference's COCO RT-DETR-R18vd checkpoint converted to sod2's names at
``./weights/rtdetr_r18vd_6x_coco_sod2.pth`` (its 80-class score heads and denoising embedding do
not fit the 4 classes and are skipped at loading).

R50-vd instead: ``rtdetr_depth(model, "r50")`` and its COCO weights."""
from ..common.data.hituav import NUM_TRAIN_IMAGES, dataloader
from ..common.models.rtdetr import model, rtdetr_depth, rtdetr_norm
from ..common.recipes.rtdetr import linear_warmup
from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
from ..common.train import train

SIZE, EPOCHS, BATCH = 640, 72, 16
dataloader.train.total_batch_size = BATCH
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // BATCH

rtdetr_depth(model, "r18")
rtdetr_norm(model, "SyncBN")  # the reference's sync_bn (plain BN in one process)
model.num_classes = 4
# RT-DETR's recipe (configs/common/recipes/rtdetr.py), the data config's ignore-region painting kept
use_rtdetr_recipe(dataloader, train)
optimizer.lr = 2e-4
lr_multiplier = linear_warmup(EPOCHS * ITERS_PER_EPOCH, 2000)
train.init_checkpoint = "./weights/rtdetr_r18vd_6x_coco_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 8 * ITERS_PER_EPOCH
train.checkpointer.period = 8 * ITERS_PER_EPOCH
