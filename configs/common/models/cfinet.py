"""CFINet (ICCV 2023) on its baseline: ``model`` is CFINet's Faster R-CNN R50-FPN (P2-P5, one
square anchor size per level, 256 RoIs at 1:1, the plain twin of every CFINet config) and
``cfinet`` the method's parts (the coarse-to-fine RPN and the feature imitation). Numbers
and their sources in projects/CFINet/README.md; the paper's choices by default, the official
code's as options.

A method config takes its plain twin and adds CFINet, nothing else::

    from ..common.models.cfinet import cfinet as _cfinet, imitation_mlp_lr
    model._target_ = CFINetRCNN
    model.roi_heads._target_ = FeatureImitationROIHeads
    model.cfinet = _cfinet
    imitation_mlp_lr(optimizer)  # Feat2Embed's MLP at 0.05x, as the official code

Off (the plain twin's detector): ``model.cfinet=null``. The paper's ablations (Table 4):
``model.cfinet.imitation=null`` (+CRPN) and ``model.cfinet.crpn=null`` (+FI on the RPN).
"""
from functools import partial

from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform

from sod2.modeling.matchers import MaxIoUMatcher
from sod2.modeling.methods.cfinet import (CRPN, CFINetParts, CRPNHead, DynamicIoUAssigner, ExemplarBank,
                                          Feat2Embed, FeatureImitation, imitation_mlp_lr_factor)

from .faster_rcnn_fpn_p2 import model

# CFINet's Faster R-CNN: levels P2-P5 only (no P6), 256 channels; the RPN on P2-P5 with one
# anchor size per level (8-64 px, 3 ratios); the ROI heads sample 256 RoIs at 1:1
model.backbone.top_block = None
model.proposal_generator.in_features = ["p2", "p3", "p4", "p5"]
model.proposal_generator.anchor_generator.sizes = [[8], [16], [32], [64]]
model.proposal_generator.anchor_generator.strides = [4, 8, 16, 32]
model.proposal_generator.pre_nms_topk = (2000, 1000)
model.proposal_generator.post_nms_topk = (300, 300)
model.roi_heads.batch_size_per_image = 256
model.roi_heads.positive_fraction = 0.5

cfinet = L(CFINetParts)(
    crpn=L(CRPN)(
        in_features=["p2", "p3", "p4", "p5"],
        head=L(CRPNHead)(in_channels="${....backbone.out_channels}", dilation=3, adaptive=True),
        # one square anchor per location, side 2 x stride
        anchor_generator=L(DefaultAnchorGenerator)(sizes=[[8], [16], [32], [64]], aspect_ratios=[1.0],
                                                   strides=[4, 8, 16, 32], offset=0.0),
        # paper's Eq. 1 with log base 2; rule="code" is the official implementation's rule
        stage1_assigner=L(DynamicIoUAssigner)(base_size=12.0, gamma=0.15, rule="paper", neg_thresh=0.15),
        stage2_matcher=L(MaxIoUMatcher)(pos_thresh=0.7, neg_thresh=0.7, min_pos_iou=0.3),
        # MMDetection delta stds (0.1, 0.1, 0.5, 0.5) and (0.05, 0.05, 0.1, 0.1) as weights 1/std
        stage1_box2box=L(Box2BoxTransform)(weights=(10.0, 10.0, 2.0, 2.0)),
        stage2_box2box=L(Box2BoxTransform)(weights=(20.0, 20.0, 10.0, 10.0)),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(2000, 1000),
        post_nms_topk=(300, 300),
        nms_thresh=(0.8, 0.5),
        loss_weight={"loss_crpn_reg_s1": 9.0, "loss_crpn_cls": 0.9, "loss_crpn_reg_s2": 9.0},
    ),
    imitation=L(FeatureImitation)(
        num_classes="${...roi_heads.num_classes}",
        embed=L(Feat2Embed)(in_channels="${....backbone.out_channels}", roi_size=7, hidden_dim=512,
                            out_dim=128),
        bank=L(ExemplarBank)(num_classes="${..num_classes}", capacity=256,
                             channels="${....backbone.out_channels}", roi_size=7),
        temperature=0.6,
        loss_weight=0.5,
        hq_thresh=0.65,
        min_predictions=8,
        num_samples=128,
        max_bank_positives=64,
        quality_rule="paper",
        quality_proposals="all",
        negatives="paper",
    ),
    reweight_features=False,
)


def imitation_mlp_lr(optimizer, factor: float = 0.05):
    """Train Feat2Embed's MLP at ``factor`` x the learning rate (the official 0.05): sets the
    optimizer config's ``params.lr_factor_func`` (and ``params.base_lr`` to follow ``lr``)."""
    optimizer.params.base_lr = "${..lr}"
    optimizer.params.lr_factor_func = partial(imitation_mlp_lr_factor, factor=factor)
    return optimizer
