"""CFINet ablation on VisDrone2019-DET (Table 4's +CRPN row): the coarse-to-fine RPN, no feature imitation."""
from .cfinet_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.imitation = None
