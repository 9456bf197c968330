"""CFINet (ICCV 2023): Faster R-CNN R50-FPN (P2-P5) with the coarse-to-fine RPN (CRPN) and
the feature-imitation ROI head. Numbers and their sources in projects/CFINet/README.md; the
paper's choices by default, the official code's as options.

``imitation_mlp_lr(optimizer)`` trains Feat2Embed's MLP at 0.05x the learning rate, as the
official code (see ``imitation_mlp_lr_factor``).

Ablations are overrides of this file:
  model.proposal_generator = plain_rpn      # plain RPN instead of CRPN (the "+FI" and plain rows)
  model.roi_heads.imitation = None          # no feature imitation (the "+CRPN" and plain rows)
"""
from functools import partial

from detectron2.config import LazyCall as L
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead

from sod2.modeling.matchers import MaxIoUMatcher
from sod2.modeling.methods.cfinet import DynamicIoUAssigner
from sod2.modeling.methods.cfinet import CRPN, CRPNHead
from sod2.modeling.methods.cfinet import ExemplarBank, Feat2Embed, FeatureImitation, \
    FeatureImitationROIHeads, imitation_mlp_lr_factor

from .faster_rcnn_fpn_p2 import model

# levels P2-P5 only (no P6), 256 channels
model.backbone.top_block = None

model.proposal_generator = L(CRPN)(
    in_features=["p2", "p3", "p4", "p5"],
    head=L(CRPNHead)(in_channels="${...backbone.out_channels}", dilation=3, adaptive=True),
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
)

# the plain RPN of the ablation rows (CFINet's proposal numbers); set head.in_channels
# when the FPN is not 256 channels wide
plain_rpn = L(RPN)(
    in_features=["p2", "p3", "p4", "p5"],
    head=L(StandardRPNHead)(in_channels=256, num_anchors=3),
    anchor_generator=L(DefaultAnchorGenerator)(sizes=[[8], [16], [32], [64]],
                                               aspect_ratios=[0.5, 1.0, 2.0],
                                               strides=[4, 8, 16, 32], offset=0.0),
    anchor_matcher=L(Matcher)(thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True),
    box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
    batch_size_per_image=256,
    positive_fraction=0.5,
    pre_nms_topk=(2000, 1000),
    post_nms_topk=(300, 300),
    nms_thresh=0.7,
)

model.roi_heads._target_ = FeatureImitationROIHeads
model.roi_heads.batch_size_per_image = 256
model.roi_heads.positive_fraction = 0.5
model.roi_heads.box_in_features = ["p2", "p3", "p4", "p5"]
model.roi_heads.imitation = L(FeatureImitation)(
    num_classes="${..num_classes}",
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
)
model.roi_heads.reweight_features = False


def imitation_mlp_lr(optimizer, factor: float = 0.05):
    """Train Feat2Embed's MLP at ``factor`` x the learning rate (the official 0.05): sets the
    optimizer config's ``params.lr_factor_func`` (and ``params.base_lr`` to follow ``lr``)."""
    optimizer.params.base_lr = "${..lr}"
    optimizer.params.lr_factor_func = partial(imitation_mlp_lr_factor, factor=factor)
    return optimizer
