"""RT-DETR-R34vd on COCO 2017: ``rtdetr_r50vd_coco.py`` with the reference's R34 overrides
(``rtdetr_r34vd_6x_coco.yml``): ResNet34-vd with nothing frozen and its BatchNorms trained
(synchronised), CSP expansion 0.5, 4 decoder layers; backbone lr 1e-5, no weight decay on
norms. Backbone weights: ``ResNet34_vd_pretrained_from_paddle.pth`` converted as for R50."""
from ..common.models.rtdetr import rtdetr_depth, rtdetr_norm
from .rtdetr_r50vd_coco import dataloader, lr_multiplier, model, optimizer, train

rtdetr_depth(model, "r34")
rtdetr_norm(model, "SyncBN")
train.init_checkpoint = "./weights/ResNet34_vd_pretrained_sod2.pth"
