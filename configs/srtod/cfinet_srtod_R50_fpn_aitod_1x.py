"""CFINet (CRPN + feature imitation) R50-FPN with SR-TOD on AI-TOD: reconstruction from P2,
learnable difference threshold, DGFE. Data, schedule and initial threshold are those of the
Faster R-CNN twin ``faster_rcnn_srtod_R50_fpn_aitod_1x.py``. Without SR-TOD (the baseline
detector itself): ``model.feature_hook=null``."""
from ..common.models.srtod import hook as _hook
from .cfinet_srtod_plain_R50_fpn_aitod_1x import dataloader, lr_multiplier, model, optimizer, train
from .faster_rcnn_srtod_R50_fpn_aitod_1x import model as _twin

model.feature_hook = _hook
model.feature_hook.threshold.init = _twin.feature_hook.threshold.init
