"""CFINet ablation on aitod: plain Faster R-CNN under CFINet's settings (plain RPN, no imitation)."""
from ..common.models.cfinet import plain_rpn
from .cfinet_R50_fpn_aitod_1x import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator = plain_rpn
model.roi_heads.imitation = None
