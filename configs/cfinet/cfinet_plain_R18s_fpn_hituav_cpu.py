"""CFINet's plain twin on the real HIT-UAV thermal images (CC BY 4.0, Suo et al. 2023) within a CPU
budget: ``cfinet_plain_R18s_fpn_synthetic.py``'s detector trained from scratch on 200 images of the
public val split, evaluated on its other 90 (AI-TOD buckets); 300 iterations of batch 4."""
from ..common.data.hituav_cpu import dataloader
from ..common.schedules import step_schedule
from .cfinet_plain_R18s_fpn_synthetic import model, optimizer, train

model.roi_heads.num_classes = 4
train.max_iter = 300
train.eval_period = 300
train.checkpointer.period = 300
lr_multiplier = step_schedule(train.max_iter, steps=[220, 280], warmup_iters=50)
