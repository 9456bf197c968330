"""Small reusable ops: losses and adaptive convolution offsets."""
from .adaptive_conv import AdaptiveConv, adaptive_conv_offsets  # noqa: F401
from .losses import iou_loss, supervised_contrastive_loss  # noqa: F401
from .csp_blocks import BaseConv, Bottleneck, CSPLayer, DWConv, Focus, SPPBottleneck  # noqa: F401
from .losses import box_iou_loss  # noqa: F401
