"""CFINet on the embedded synthetic dataset: the synthetic baseline's small ResNet-FPN
(64 channels, P2-P5), data and schedule, with CRPN and feature imitation (2 CPU cores)."""
from ..baselines.faster_rcnn_R18s_fpn_synthetic import dataloader, lr_multiplier, optimizer, train
from ..common.models.cfinet import model
from ..common.models.small_resnet import backbone

model.backbone.bottom_up = backbone
model.backbone.out_channels = 64
model.backbone.norm = ""
model.pixel_std = [57.375, 57.120, 58.395]
model.roi_heads.num_classes = 3
model.roi_heads.box_head.fc_dims = [256, 256]
model.roi_heads.imitation.embed.hidden_dim = 256
train.output_dir = "./output/cfinet_R18s_fpn_synthetic"
