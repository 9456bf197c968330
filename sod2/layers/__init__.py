"""Small reusable ops: losses and adaptive convolution offsets."""
from .adaptive_conv import AdaptiveConv, adaptive_conv_offsets  # noqa: F401
from .losses import iou_loss, supervised_contrastive_loss  # noqa: F401
