"""CFINet (Yuan et al., CVPR 2023): coarse-to-fine RPN and feature imitation."""
from .adaptive_conv import AdaptiveConv, adaptive_conv_offsets  # noqa: F401
from .crpn import CRPN, CRPNHead  # noqa: F401  (registers CRPN in PROPOSAL_GENERATOR_REGISTRY)
from .dynamic_iou import DynamicIoUAssigner, dynamic_iou_threshold  # noqa: F401
from .feature_imitation import (ExemplarBank, Feat2Embed, FeatureImitation,  # noqa: F401
                                FeatureImitationROIHeads, imitation_mlp_lr_factor)
