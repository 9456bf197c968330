"""CFINet ablation on the synthetic dataset: plain Faster R-CNN with CFINet's settings."""
from ..common.models.cfinet import plain_rpn
from .cfinet_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator = plain_rpn
model.proposal_generator.head.in_channels = 64
model.roi_heads.imitation = None
