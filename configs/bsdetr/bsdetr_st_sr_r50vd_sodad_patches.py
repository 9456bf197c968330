"""Better Sampling ablation row "ST+SR" (Table 3) of ``bsdetr_r50vd_sodad_patches.py``:
scale-aligned target and sample reweighting (no SPR); data, schedule, the paper's VFL alpha 0.5
/ gamma 1.5 and weights are shared."""
from .bsdetr_r50vd_sodad_patches import dataloader, lr_multiplier, model, optimizer, train

model.criterion.better_sampling.point_refinement = None
