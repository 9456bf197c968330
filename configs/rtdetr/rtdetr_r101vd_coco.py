"""RT-DETR-R101vd on COCO 2017: ``rtdetr_r50vd_coco.py`` with the reference's R101 overrides
(``rtdetr_r101vd_6x_coco.yml``): ResNet101-vd, an encoder 384 wide with a 2048-wide FFN (the
decoder stays 256 wide and projects the 384-channel maps), backbone lr 1e-6, and weight decay
on every parameter (its optimiser has no weight-decay-free groups, so norms and biases decay
too). Backbone weights: ``ResNet101_vd_ssld_pretrained_from_paddle.pth`` converted as for R50."""
from ..common.models.rtdetr import rtdetr_depth, rtdetr_norm
from .rtdetr_r50vd_coco import dataloader, lr_multiplier, model, optimizer, train

rtdetr_depth(model, "r101")
rtdetr_norm(model, "SyncBN")
optimizer.params.lr_factor_func.factors = {"backbone.": 0.01}
optimizer.params.weight_decay_norm = None  # the optimizer's weight decay everywhere
optimizer.params.overrides = None
train.init_checkpoint = "./weights/ResNet101_vd_ssld_pretrained_sod2.pth"
