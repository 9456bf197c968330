"""The plain twin of ``bsdetr_r50vd_sodad_patches.py`` (Better Sampling ablation row "none"):
RT-DETR without ST, SR and SPR; data, schedule, VFL alpha 0.5 / gamma 1.5 and weights are
shared."""
from .bsdetr_r50vd_sodad_patches import dataloader, lr_multiplier, model, optimizer, train

model.criterion.class_target = None
model.criterion.reweighting = None
model.criterion.point_refinement = None
