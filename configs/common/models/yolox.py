"""YOLOX (CSPDarknet + PAFPN + decoupled head + SimOTA), YOLOX-S by default.

``yolox_size(model, "nano" | "tiny" | "s" | "m" | "l" | "x")`` sets depth, width and
depthwise (A.5 of the YOLOX facts; the head width follows). The head's input shape follows
``model.backbone.in_features``: adding "dark2" there is the 4-scale (p2-p5) variant.
Input: BGR 0-255, not normalised, padded with 114 (YOLOX's letterbox).
``use_p2(model)`` is that 4-scale variant (strides 4-32), the head of Foreground Probing's
paper and of its plain twins (configs/fgprobe/fgprobe_plain_*).
"""
from detectron2.config import LazyCall as L

from sod2.modeling.assigners import SimOTAAssigner
from sod2.modeling.backbone import CSPDarknet, YOLOPAFPN, pafpn_output_shape
from sod2.modeling.heads import YOLOXHead
from sod2.modeling.meta_arch import YOLOX

# name -> (depth, width, depthwise)
YOLOX_SIZES = {
    "nano": (0.33, 0.25, True),
    "tiny": (0.33, 0.375, False),
    "s": (0.33, 0.50, False),
    "m": (0.67, 0.75, False),
    "l": (1.0, 1.0, False),
    "x": (1.33, 1.25, False),
}

model = L(YOLOX)(
    backbone=L(YOLOPAFPN)(
        bottom_up=L(CSPDarknet)(depth=0.33, width=0.50, depthwise=False, act="silu",
                                out_features="${..in_features}"),
        in_features=["dark3", "dark4", "dark5"],
        depth="${.bottom_up.depth}",
        depthwise="${.bottom_up.depthwise}",
        act="${.bottom_up.act}",
        square_pad=0,
    ),
    head=L(YOLOXHead)(
        input_shape=L(pafpn_output_shape)(in_features="${...backbone.in_features}",
                                          width="${...backbone.bottom_up.width}"),
        num_classes="${..num_classes}",
        feat_channels=128,  # int(256 * width)
        depthwise="${..backbone.bottom_up.depthwise}",
        act="${..backbone.bottom_up.act}",
        prior_prob=0.01,
    ),
    assigner=L(SimOTAAssigner)(rule="center"),
    num_classes=80,
    head_in_features=None,  # all backbone levels
    pixel_mean=[0.0, 0.0, 0.0],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
    loss_weights={"iou": 5.0, "obj": 1.0, "cls": 1.0, "l1": 1.0},
    iou_loss_type="iou",
    use_l1=False,
    test_score_thresh=0.01,
    test_nms_thresh=0.65,
    max_detections_per_image=1500,
    pad_value=114.0,
)


def yolox_size(model, name: str):
    """Set a YOLOX model config to size ``name`` (in place; returns the model)."""
    if name not in YOLOX_SIZES:
        raise ValueError(f"unknown YOLOX size {name!r}; known: {sorted(YOLOX_SIZES)}")
    depth, width, depthwise = YOLOX_SIZES[name]
    model.backbone.bottom_up.depth = depth
    model.backbone.bottom_up.width = width
    model.backbone.bottom_up.depthwise = depthwise
    model.head.feat_channels = int(256 * width)
    return model


def use_p2(model):
    """The 4-scale head (P2-P5, strides 4-32) on a YOLOX model config (in place; returns it)."""
    model.backbone.in_features = ["dark2", "dark3", "dark4", "dark5"]
    return model
