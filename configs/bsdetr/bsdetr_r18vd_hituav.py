"""Better Sampling (ST + SR + SPR, the paper's VFL alpha 0.5 gamma 1.5) on RT-DETR-R18vd on
HIT-UAV: the plain twin ``bsdetr_plain_r18vd_hituav.py`` (data, model, recipe) with Better
Sampling's criterion.

Off: ``model.criterion.better_sampling=null`` (= the plain twin, RT-DETR's VFL 0.75 / 2.0).
Ablation rows (Table 3; everything else shared, the paper's VFL included):
``bsdetr_none_r18vd_hituav.py`` (none), ``bsdetr_sr_...`` (SR), ``bsdetr_spr_...`` (SPR),
``bsdetr_st_sr_...`` (ST+SR), this file (ST+SR+SPR); each part off as an override:
``model.criterion.better_sampling.class_target=null`` (ST), ``...reweighting=null`` (SR),
``...point_refinement=null`` (SPR)."""
from ..common.models.bsdetr import BetterSamplingCriterion, default_etas
from ..common.models.bsdetr import better_sampling as _better_sampling
from .bsdetr_plain_r18vd_hituav import dataloader, lr_multiplier, model, optimizer, train

model.criterion._target_ = BetterSamplingCriterion
model.criterion.better_sampling = _better_sampling
# SPR: one eta per decoder layer; this decoder has 3 (default_etas: the paper's values at the same depth)
model.criterion.better_sampling.point_refinement.etas = list(default_etas(model.decoder.num_layers))
