"""The plain twin of cfinet_R18s_fpn_hituav_cpu: same detector without CRPN and feature imitation."""
from ..common.models.cfinet import plain_rpn
from .cfinet_R18s_fpn_hituav_cpu import dataloader, lr_multiplier, model, optimizer, train

model.proposal_generator = plain_rpn
model.proposal_generator.head.in_channels = 64
model.roi_heads.imitation = None
