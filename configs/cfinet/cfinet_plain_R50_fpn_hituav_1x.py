"""CFINet's plain twin R50-FPN on HIT-UAV thermal images (train -> val; CC BY 4.0, Suo et al. 2023): ``cfinet_plain_R50_fpn_aitod_1x.py``
with this dataset (same recipe: batch 4, 12 epochs of it)."""
from ..common.data.hituav import NUM_TRAIN_IMAGES, dataloader
from ..common.schedules import epoch_schedule
from .cfinet_plain_R50_fpn_aitod_1x import model, optimizer, train

model.roi_heads.num_classes = 4
dataloader.train.total_batch_size = 4
iters_per_epoch = NUM_TRAIN_IMAGES // dataloader.train.total_batch_size
train.max_iter = 12 * iters_per_epoch
lr_multiplier = epoch_schedule(12, [8, 11], iters_per_epoch, warmup_iters=500, warmup_factor=0.001)
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter // 12
