"""Better Sampling ablation row "SPR" (Table 3) of ``bsdetr_r18vd_hituav.py``: sample-point
refinement only (IoU target, no SR); data, schedule, the paper's VFL alpha 0.5 / gamma 1.5 and
weights are shared."""
from .bsdetr_r18vd_hituav import dataloader, lr_multiplier, model, optimizer, train

model.criterion.better_sampling.class_target = None
model.criterion.better_sampling.reweighting = None
