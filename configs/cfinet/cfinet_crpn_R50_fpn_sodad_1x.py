"""CFINet ablation on sodad: +CRPN: the coarse-to-fine RPN, no feature imitation."""
from .cfinet_R50_fpn_sodad_1x import dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.imitation = None
