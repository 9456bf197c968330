"""CFINet (CRPN + feature imitation) R50-FPN on SODA-D: its plain twin
(``cfinet_plain_R50_fpn_sodad_1x.py``: data, recipe, ImageNet weights) with CFINet's parts.
Off: ``model.cfinet=null``; ablations ``cfinet_crpn_*`` / ``cfinet_fi_*``."""
from sod2.modeling.methods.cfinet import CFINetRCNN, FeatureImitationROIHeads

from ..common.models.cfinet import cfinet as _cfinet
from ..common.models.cfinet import imitation_mlp_lr
from .cfinet_plain_R50_fpn_sodad_1x import dataloader, lr_multiplier, model, optimizer, train

# CFINet = its plain twin + these lines (off: model.cfinet=null)
model._target_ = CFINetRCNN
model.roi_heads._target_ = FeatureImitationROIHeads
model.cfinet = _cfinet
imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code
