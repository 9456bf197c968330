"""CFINet ablation on SODA-D (Table 4's +CRPN row): the coarse-to-fine RPN, no feature imitation."""
from .cfinet_R50_fpn_sodad_1x import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.imitation = None
