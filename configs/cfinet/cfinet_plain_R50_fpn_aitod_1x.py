"""CFINet's plain twin R50-FPN on AI-TOD (trainval -> test): Faster R-CNN with CFINet's settings
(``common/models/cfinet.py``); SGD lr 0.01, batch 4, 12 epochs with steps at 8 and 11,
500-iteration warm-up from 0.001 (the paper's SODA-D recipe), from ImageNet weights (MSRA R-50:
BGR input, FrozenBN). The HIT-UAV, VisDrone and SODA-D twins are this file with their data."""
from ..common.data.aitod import NUM_TRAIN_IMAGES, dataloader
from ..common.models.cfinet import model
from ..common.optim import SGD as optimizer
from ..common.schedules import epoch_schedule
from ..common.train import train

model.roi_heads.num_classes = 8
dataloader.train.total_batch_size = 4
optimizer.lr = 0.01
train.init_checkpoint = "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
iters_per_epoch = NUM_TRAIN_IMAGES // dataloader.train.total_batch_size
train.max_iter = 12 * iters_per_epoch
lr_multiplier = epoch_schedule(12, [8, 11], iters_per_epoch, warmup_iters=500, warmup_factor=0.001)
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter // 12
