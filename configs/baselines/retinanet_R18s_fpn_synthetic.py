"""RetinaNet with the small ResNet-FPN (P3-P7, 64 channels), trained from scratch on the
embedded synthetic dataset (the one-stage counterpart of faster_rcnn_R18s_fpn_synthetic)."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from ..common.models.retinanet_fpn_p3 import model
from ..common.models.small_resnet import use_small_resnet
from .faster_rcnn_R18s_fpn_synthetic import dataloader, lr_multiplier, optimizer, train

use_small_resnet(model, out_features=["res3", "res4", "res5"])
model.backbone.top_block = L(LastLevelP6P7)(in_channels=256, out_channels="${..out_channels}")
model.head.input_shape = [L(ShapeSpec)(channels=64)] * 5
model.head.conv_dims = [64, 64]
model.num_classes = 3
optimizer.lr = 0.01
