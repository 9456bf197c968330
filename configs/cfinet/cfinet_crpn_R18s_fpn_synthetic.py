"""CFINet ablation on synthetic (Table 4's +CRPN row): the coarse-to-fine RPN, no feature imitation."""
from .cfinet_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.imitation = None
