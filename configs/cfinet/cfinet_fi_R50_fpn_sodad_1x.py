"""CFINet ablation on SODA-D (Table 4's +FI row): feature imitation on the plain twin's RPN."""
from .cfinet_R50_fpn_sodad_1x import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.crpn = None
