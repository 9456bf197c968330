"""Cascade R-CNN R50-FPN (P2-P6, small anchors) on VisDrone2019-DET, 1x: the Faster R-CNN baseline's
data, schedule and optimizer with 3 cascade stages."""
from ..common.models.cascade_rcnn_fpn_p2 import model
from .faster_rcnn_R50_fpn_visdrone_1x import dataloader, lr_multiplier, optimizer, train

model.roi_heads.num_classes = 10
