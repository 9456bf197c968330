"""Small reusable ops: losses, CSP and RepVGG blocks, MLP,
multi-scale deformable attention."""
from .losses import iou_loss, supervised_contrastive_loss  # noqa: F401
from .csp_blocks import BaseConv, Bottleneck, CSPLayer, DWConv, Focus, SPPBottleneck  # noqa: F401
from .losses import box_iou_loss  # noqa: F401
from .rep_blocks import ConvNormAct, CSPRepLayer, RepVggBlock  # noqa: F401
from .losses import varifocal_loss  # noqa: F401
from .mlp import MLP, bias_init_with_prob, inverse_sigmoid  # noqa: F401
# (the function ms_deform_attn is imported from sod2.layers.ms_deform_attn: exporting it here would
# shadow the submodule of the same name)
from .ms_deform_attn import DeformableAttentionOutput, MSDeformableAttention  # noqa: F401
