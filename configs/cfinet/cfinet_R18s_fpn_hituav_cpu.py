"""CFINet on the real HIT-UAV thermal images within a CPU budget: its plain twin
(``cfinet_plain_R18s_fpn_hituav_cpu.py``) with CRPN and feature imitation, sized as
``cfinet_R18s_fpn_synthetic.py``. Off: ``model.cfinet=null``."""
from sod2.modeling.methods.cfinet import CFINetRCNN, FeatureImitationROIHeads

from ..common.models.cfinet import cfinet as _cfinet
from ..common.models.cfinet import imitation_mlp_lr
from .cfinet_plain_R18s_fpn_hituav_cpu import dataloader, lr_multiplier, model, optimizer, train

# CFINet = its plain twin + these lines (off: model.cfinet=null)
model._target_ = CFINetRCNN
model.roi_heads._target_ = FeatureImitationROIHeads
model.cfinet = _cfinet
model.cfinet.imitation.embed.hidden_dim = 256
model.cfinet.imitation.embed.num_groups = 8  # GroupNorm over 8 channels, as 32 groups of 256
imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code
