"""RT-DETR's transformer parts: the hybrid encoder, query selection, contrastive denoising
and the decoder."""
from .rtdetr_decoder import (  # noqa: F401
    OPTIONAL_FIELDS,
    DecoderLayerOutput,
    DecoderOutput,
    EncoderOutput,
    RTDETRDecoder,
    RTDETRDecoderLayer,
)
from .hybrid_encoder import HybridEncoder, build_2d_sincos_position_embedding  # noqa: F401
from .query_selection import QuerySelection, SelectedQueries, generate_anchors  # noqa: F401
from .denoising import ContrastiveDenoising, DenoisingQueries, denoising_attn_mask  # noqa: F401
