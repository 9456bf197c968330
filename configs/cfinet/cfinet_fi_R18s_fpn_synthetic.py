"""CFINet ablation on synthetic (Table 4's +FI row): feature imitation on the plain twin's RPN."""
from .cfinet_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.crpn = None
