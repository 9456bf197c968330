"""RT-DETR (ResNet-vd + hybrid encoder + decoder with query selection and contrastive
denoising), RT-DETR-R50vd by default, with the reference's values (lyuwenyu/RT-DETR v1,
``configs/rtdetr/include/rtdetr_r50vd.yml``).

``rtdetr_depth(model, "r18" | "r34" | "r50" | "r50_m" | "r101")`` applies the per-model
overrides of the reference's 6x COCO configs (backbone depth and freezing, encoder width and
CSP expansion, decoder layers, ``eval_idx`` for R50-m). ``rtdetr_norm(model, "SyncBN")``
switches every trainable BatchNorm (R18/R34 backbone, encoder, decoder input projection) to
another norm: the reference converts them to SyncBatchNorm under DDP (``sync_bn: True``); the
default here is plain "BN", which also trains on CPU processes (gloo).
``rtdetr_eval_size(model, (H, W))`` sets the input size whose anchors and encoder position
embedding are precomputed for inference (other sizes compute theirs).
Input: RGB in [0, 1] (pixel_std 255), no mean/std normalisation, as the reference.
"""
from detectron2.config import LazyCall as L

from sod2.modeling.backbone import ResNetVd
from sod2.modeling.criterion import SetCriterion
from sod2.modeling.matchers import HungarianMatcher
from sod2.modeling.meta_arch import RTDETR
from sod2.modeling.transformer.denoising import ContrastiveDenoising
from sod2.modeling.transformer.hybrid_encoder import HybridEncoder
from sod2.modeling.transformer.query_selection import QuerySelection
from sod2.modeling.transformer.rtdetr_decoder import RTDETRDecoder

EVAL_SIZE = [640, 640]

# name -> (depth, backbone freeze_at (Detectron2 meaning), backbone norm, encoder hidden_dim,
#          encoder dim_feedforward, CSP expansion, decoder layers, eval_idx)
# (spec B.1: R18/R34 freeze nothing and train their BNs; R50/R101 freeze the stem and use
# frozen BN; R101's encoder is 384 wide with a 2048 FFN while its decoder stays 256)
RTDETR_VARIANTS = {
    "r18": (18, 0, "BN", 256, 1024, 0.5, 3, -1),
    "r34": (34, 0, "BN", 256, 1024, 0.5, 4, -1),
    "r50_m": (50, 1, "FrozenBN", 256, 1024, 0.5, 6, 2),
    "r50": (50, 1, "FrozenBN", 256, 1024, 1.0, 6, -1),
    "r101": (101, 1, "FrozenBN", 384, 2048, 1.0, 6, -1),
}

model = L(RTDETR)(
    backbone=L(ResNetVd)(depth=50, out_features=["res3", "res4", "res5"], freeze_at=1, norm="FrozenBN"),
    encoder=L(HybridEncoder)(
        in_features="${..backbone.out_features}",
        in_channels=[512, 1024, 2048],
        feat_strides=[8, 16, 32],
        hidden_dim=256,
        use_encoder_idx=[2],
        num_encoder_layers=1,
        nhead=8,
        dim_feedforward=1024,
        dropout=0.0,
        enc_act="gelu",
        pe_temperature=10000,
        expansion=1.0,
        depth_mult=1.0,
        act="silu",
        eval_spatial_size=EVAL_SIZE,
        norm="BN",
    ),
    decoder=L(RTDETRDecoder)(
        query_selection=L(QuerySelection)(
            hidden_dim="${..hidden_dim}",
            num_classes="${...num_classes}",
            num_queries=300,
            grid_size=0.05,
            eps=1e-2,
            eval_spatial_size=EVAL_SIZE,
            feat_strides=[8, 16, 32],
        ),
        in_channels=[256, 256, 256],  # the encoder's hidden_dim, per level
        hidden_dim=256,
        num_classes="${..num_classes}",
        num_layers=6,
        num_heads=8,
        num_points=4,
        dim_feedforward=1024,
        dropout=0.0,
        eval_idx=-1,
        norm="BN",
    ),
    criterion=L(SetCriterion)(
        matcher=L(HungarianMatcher)(cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2.0),
        num_classes="${..num_classes}",
        weight_dict={"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0},
        alpha=0.75,
        gamma=2.0,
    ),
    denoising=L(ContrastiveDenoising)(
        num_classes="${..num_classes}",
        hidden_dim="${..decoder.hidden_dim}",
        num_denoising=100,
        label_noise_ratio=0.5,
        box_noise_scale=1.0,
    ),
    num_classes=80,
    num_top_queries=300,
    pixel_mean=[0.0, 0.0, 0.0],
    pixel_std=[255.0, 255.0, 255.0],
    input_format="RGB",
    size_divisibility=32,
    clip_boxes=False,
)


def rtdetr_depth(model, name):
    """Set an RT-DETR model config to variant ``name`` ("r18", "r34", "r50", "r50_m", "r101";
    also 18, 34, 50, 101) in place; returns the model. Every value the variants differ in is
    set, so calls can follow each other."""
    key = f"r{name}" if isinstance(name, int) else str(name).lower()
    if key not in RTDETR_VARIANTS:
        raise ValueError(f"unknown RT-DETR variant {name!r}; known: {sorted(RTDETR_VARIANTS)}")
    depth, freeze_at, backbone_norm, enc_dim, enc_ffn, expansion, layers, eval_idx = RTDETR_VARIANTS[key]
    model.backbone.depth = depth
    model.backbone.freeze_at = freeze_at
    model.backbone.norm = backbone_norm
    model.encoder.in_channels = [128, 256, 512] if depth < 50 else [512, 1024, 2048]
    model.encoder.hidden_dim = enc_dim
    model.encoder.dim_feedforward = enc_ffn
    model.encoder.expansion = expansion
    model.decoder.in_channels = [enc_dim] * 3
    model.decoder.num_layers = layers
    model.decoder.eval_idx = eval_idx
    return model


def rtdetr_norm(model, norm: str = "SyncBN"):
    """Use ``norm`` for every trainable BatchNorm: the encoder's, the decoder's input
    projection, and the backbone's when it is not frozen ("FrozenBN" stays). In place;
    returns the model."""
    model.encoder.norm = norm
    model.decoder.norm = norm
    if model.backbone.norm != "FrozenBN":
        model.backbone.norm = norm
    return model


def rtdetr_eval_size(model, size):
    """Precompute the inference anchors and encoder position embedding for input size
    ``size`` = (H, W) (None: always compute them). In place; returns the model."""
    size = list(size) if size is not None else None
    model.encoder.eval_spatial_size = size
    model.decoder.query_selection.eval_spatial_size = size
    return model
