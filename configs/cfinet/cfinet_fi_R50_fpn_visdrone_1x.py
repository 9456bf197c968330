"""CFINet ablation on visdrone: +FI: feature imitation on a plain RPN."""
from ..common.models.cfinet import plain_rpn
from .cfinet_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator = plain_rpn
