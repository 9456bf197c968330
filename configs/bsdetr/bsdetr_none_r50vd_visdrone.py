"""Better Sampling ablation row "none" (Table 3) of ``bsdetr_r50vd_visdrone.py``: ST, SR and SPR
all off, but the paper's VFL alpha 0.5 / gamma 1.5 kept (Table 6 uses them for every row, so
that the rows differ only in the three parts). RT-DETR itself, with its own VFL 0.75 / 2.0, is
``bsdetr_plain_r50vd_visdrone.py``."""
from .bsdetr_r50vd_visdrone import dataloader, lr_multiplier, model, optimizer, train

model.criterion.better_sampling.class_target = None
model.criterion.better_sampling.reweighting = None
model.criterion.better_sampling.point_refinement = None
