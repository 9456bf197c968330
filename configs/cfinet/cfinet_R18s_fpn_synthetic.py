"""CFINet on the embedded synthetic dataset: its plain twin (``cfinet_plain_R18s_fpn_synthetic.py``:
the small ResNet-FPN, data and 400-iteration schedule) with CRPN and feature imitation, the
imitation's MLP sized for the 64-channel FPN. Off: ``model.cfinet=null``."""
from sod2.modeling.methods.cfinet import CFINetRCNN, FeatureImitationROIHeads

from ..common.models.cfinet import cfinet as _cfinet
from ..common.models.cfinet import imitation_mlp_lr
from .cfinet_plain_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

# CFINet = its plain twin + these lines (off: model.cfinet=null)
model._target_ = CFINetRCNN
model.roi_heads._target_ = FeatureImitationROIHeads
model.cfinet = _cfinet
model.cfinet.imitation.embed.hidden_dim = 256
model.cfinet.imitation.embed.num_groups = 8  # GroupNorm over 8 channels, as 32 groups of 256
imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code
