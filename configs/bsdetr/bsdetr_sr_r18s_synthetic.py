"""Better Sampling ablation row "SR" (Table 3) of ``bsdetr_r18s_synthetic.py``: sample reweighting
only (IoU target, no SPR); data, schedule, the paper's VFL alpha 0.5 / gamma 1.5 and weights are
shared."""
from .bsdetr_r18s_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.criterion.better_sampling.class_target = None
model.criterion.better_sampling.point_refinement = None
