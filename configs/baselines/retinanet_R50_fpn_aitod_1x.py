"""RetinaNet R50-FPN (P3-P7, anchors from 8 px) on AI-TOD, 1x: the Faster R-CNN baseline's
data, schedule and optimizer."""
from ..common.models.retinanet_fpn_p3 import model
from .faster_rcnn_R50_fpn_aitod_1x import dataloader, lr_multiplier, optimizer, train

model.num_classes = 8
