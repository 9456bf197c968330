"""CFINet ablation on the synthetic dataset: +CRPN only."""
from .cfinet_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.imitation = None
