"""CFINet (CRPN + feature imitation) R50-FPN with SR-TOD on AI-TOD: reconstruction from P2, learnable
difference threshold, DGFE. Data, schedule and initial threshold are those of the Faster R-CNN
twin ``faster_rcnn_srtod_R50_fpn_aitod_1x.py``. Without SR-TOD: ``model.backbone.enabled=False``."""
from functools import partial

from sod2.modeling.roi_heads import imitation_mlp_lr_factor

from ..common.models.cfinet import model
from ..common.models.srtod import with_srtod
from .faster_rcnn_srtod_R50_fpn_aitod_1x import dataloader, lr_multiplier, optimizer, train
from .faster_rcnn_srtod_R50_fpn_aitod_1x import model as _twin

model.roi_heads.num_classes = _twin.roi_heads.num_classes
with_srtod(model, threshold=_twin.backbone.threshold.init)
train.output_dir = "./output/cfinet_srtod_R50_fpn_aitod_1x"
# Feat2Embed's MLP at 0.05x the learning rate, as the official code (see imitation_mlp_lr_factor)
optimizer.params.base_lr = "${..lr}"
optimizer.params.lr_factor_func = partial(imitation_mlp_lr_factor, factor=0.05)
