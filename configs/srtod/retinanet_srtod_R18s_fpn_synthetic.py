"""RetinaNet with SR-TOD on the embedded synthetic dataset (small ResNet-FPN from scratch, the
synthetic config's schedule); the difference threshold starts at 16/255, above the images'
sensor noise (sigma 8/255). Without SR-TOD: ``model.backbone.enabled=False``."""
from sod2.modeling.meta_arch import SRTODRetinaNet

from ..common.models.srtod import hook
from ..baselines.retinanet_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model._target_ = SRTODRetinaNet
hook.level = "p3"
hook.head.num_up = 3
hook.fpn = model.backbone
hook.threshold.init = 16 / 255
model.backbone = hook
del hook  # not a top-level config entry of its own
train.output_dir = "./output/retinanet_srtod_R18s_fpn_synthetic"
