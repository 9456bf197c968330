"""CFINet ablation on VisDrone2019-DET (Table 4's +FI row): feature imitation on the plain twin's RPN."""
from .cfinet_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

model.cfinet.crpn = None
