"""RT-DETR's decoder: input projection of the encoder's feature maps, query selection (a
module passed in), then post-norm decoder layers with deformable cross-attention and
iterative box refinement, one score head and one box head per layer.

Behaviour follows the reference RT-DETR v1 (``RTDETRTransformer`` + ``TransformerDecoder``);
given the same weights it computes the same logits and boxes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, AbstractSet, List, Optional, Sequence, Tuple

import torch
from detectron2.layers import Conv2d, get_norm
from torch import Tensor, nn
from torch.nn import functional as F

from ...layers.mlp import MLP, bias_init_with_prob, inverse_sigmoid
from ...layers.ms_deform_attn import DeformableAttentionOutput, MSDeformableAttention
from ..checks import check_size

if TYPE_CHECKING:  # only for annotations: the denoising queries are built by the caller
    from .denoising import DenoisingQueries

__all__ = ["RTDETRDecoderLayer", "RTDETRDecoder", "DecoderOutput", "DecoderLayerOutput", "EncoderOutput",
           "OPTIONAL_FIELDS"]

# the largest finite float16 value: the reference clamps before the last LayerNorm so that
# an overflowing FFN output cannot become NaN under AMP; finite fp32 values in this range
# are unchanged
FP16_MAX = 65504.0


class RTDETRDecoderLayer(nn.Module):
    """One post-norm decoder layer:

    * self-attention (``self_attn``, q = k = tgt + pos, v = tgt, boolean mask True = blocked),
      residual, ``norm1``;
    * deformable cross-attention to the memory (``cross_attn``, query tgt + pos, reference
      box), residual, ``norm2``;
    * FFN ``linear2(relu(linear1(tgt)))``, residual, clamp to +-``clamp``, ``norm3``.

    Args:
        hidden_dim: C.
        num_heads: heads of both attentions.
        num_levels: feature levels of the memory.
        num_points: sampling points per head and level.
        dim_feedforward: FFN width.
        dropout: after each attention and in the FFN (0 in RT-DETR).
        clamp: clamp the FFN residual sum to [-clamp, clamp] before ``norm3`` (the reference
            at HEAD, 65504); None disables it.
    """

    def __init__(self, hidden_dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4,
                 dim_feedforward: int = 1024, dropout: float = 0.0, clamp: Optional[float] = FP16_MAX):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(hidden_dim)
        self.cross_attn = MSDeformableAttention(hidden_dim, num_heads, num_levels, num_points)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(hidden_dim)
        self.linear1 = nn.Linear(hidden_dim, dim_feedforward)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, hidden_dim)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(hidden_dim)
        self.clamp = clamp

    def forward(self, tgt: Tensor, query_pos: Tensor, reference_boxes: Tensor, memory: Tensor,
                spatial_shapes: Sequence[Tuple[int, int]], attn_mask: Optional[Tensor] = None
                ) -> Tuple[Tensor, DeformableAttentionOutput]:
        """
        Args:
            tgt: (B, N, C) content queries.
            query_pos: (B, N, C) positional embedding of the reference boxes.
            reference_boxes: (B, N, 4) normalised cxcywh (detached by the caller).
            memory: (B, S, C) flattened multi-level memory.
            spatial_shapes: L pairs (H_l, W_l).
            attn_mask: (N, N) bool, True = query i may not attend to query j; None = no mask.

        Returns:
            (tgt (B, N, C), the cross-attention's :class:`DeformableAttentionOutput`).
        """
        q = k = tgt + query_pos
        sa, _ = self.self_attn(q, k, value=tgt, attn_mask=attn_mask, need_weights=False)
        tgt = self.norm1(tgt + self.dropout1(sa))

        ca = self.cross_attn(tgt + query_pos, reference_boxes, memory, spatial_shapes)
        tgt = self.norm2(tgt + self.dropout2(ca.output))

        ffn = self.linear2(self.dropout3(F.relu(self.linear1(tgt))))
        tgt = tgt + self.dropout4(ffn)
        if self.clamp is not None:
            tgt = tgt.clamp(min=-self.clamp, max=self.clamp)
        return self.norm3(tgt), ca


# the optional fields of an output set, produced only when the criterion asks for them
OPTIONAL_FIELDS = frozenset({"hidden", "box_hidden", "ref_boxes", "offsets", "attention"})


def _split(x: Optional[Tensor], num_denoising: int) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """(x[:, :num_denoising], x[:, num_denoising:]) for a per-query tensor, (None, None) for None."""
    if x is None:
        return None, None
    return x[:, :num_denoising], x[:, num_denoising:]


@dataclass
class EncoderOutput:
    """The query selection's top-Q predictions, the "enc" output set of the criterion.

    Attributes:
        logits: (B, Q, num_classes) class logits before the sigmoid.
        boxes: (B, Q, 4) normalised cxcywh after the sigmoid, not detached (the "enc" loss
            trains the encoder's box head).
        hidden: (B, Q, C) the selected memory tokens, which the encoder's score head reads
            (H_cls); only when asked for (``"hidden"`` in the decoder's ``extras``).
        box_hidden: (B, Q, C) the input of the encoder box MLP's last Linear (H_reg); only
            when asked for.
    """

    logits: Tensor
    boxes: Tensor
    hidden: Optional[Tensor] = None
    box_hidden: Optional[Tensor] = None


@dataclass
class DecoderLayerOutput:
    """The predictions of one decoder layer for its N = num_denoising + Q queries (the
    denoising ones first).

    Attributes:
        logits: (B, N, num_classes) class logits before the sigmoid.
        boxes: (B, N, 4) normalised cxcywh after the sigmoid. In training, layers i > 0 refine
            the previous layer's NON-detached box ("look forward twice"), so their box loss
            also trains layer i - 1.
        layer_index: the index of the decoder layer (0 = first).

        The optional fields are None unless the decoder was asked for them (``extras``):

        hidden: (B, N, C) the layer output, which the score head reads (H_cls).
        box_hidden: (B, N, C) the input of the box MLP's last Linear (H_reg).
        ref_boxes: (B, N, 4) the detached reference box of the layer's cross-attention (the
            previous layer's refined box), normalised cxcywh.
        offsets: (B, N, M, L, P, 2) the cross-attention's raw sampling offsets (M heads, L
            levels, P points; :class:`DeformableAttentionOutput`).
        attention: (B, N, M, L, P) the cross-attention's weights (after the softmax).
    """

    logits: Tensor
    boxes: Tensor
    layer_index: int
    hidden: Optional[Tensor] = None
    box_hidden: Optional[Tensor] = None
    ref_boxes: Optional[Tensor] = None
    offsets: Optional[Tensor] = None
    attention: Optional[Tensor] = None

    def split(self, num_denoising: int) -> Tuple["DecoderLayerOutput", "DecoderLayerOutput"]:
        """(the first ``num_denoising`` queries, the other Q queries), every per-query field
        cut along dim 1, ``layer_index`` kept; the optional fields stay None where None."""
        n = int(num_denoising)
        parts = {"logits": _split(self.logits, n), "boxes": _split(self.boxes, n), "hidden": _split(self.hidden, n),
                 "box_hidden": _split(self.box_hidden, n), "ref_boxes": _split(self.ref_boxes, n),
                 "offsets": _split(self.offsets, n), "attention": _split(self.attention, n)}
        dn = DecoderLayerOutput(layer_index=self.layer_index, **{k: v[0] for k, v in parts.items()})
        match = DecoderLayerOutput(layer_index=self.layer_index, **{k: v[1] for k, v in parts.items()})
        return dn, match


@dataclass
class DecoderOutput:
    """What :class:`RTDETRDecoder` returns.

    Attributes:
        layers: one :class:`DecoderLayerOutput` per decoder layer run (training: every
            layer; eval: only the ``eval_idx`` layer).
        encoder: the query selection's :class:`EncoderOutput` (the "enc" loss).
        num_denoising: how many of the N queries of each layer are denoising queries (0
            without them).
    """

    layers: List[DecoderLayerOutput]
    encoder: EncoderOutput
    num_denoising: int = 0


class RTDETRDecoder(nn.Module):
    """The decoder half of RT-DETR's transformer.

    Forward: project each encoder map to C channels (``input_proj``: 1x1 conv, no bias, then
    BatchNorm), flatten and concatenate them into the memory (B, S, C); the query selection
    picks Q content queries and their (unactivated) reference boxes; denoising queries, if
    given, are prepended; then for each layer i, with ref = the current detached box::

        pos    = query_pos_head(ref)
        tgt    = layers[i](tgt, pos, ref, memory)
        delta  = dec_bbox_head[i](tgt)
        refined = sigmoid(delta + inverse_sigmoid(ref))
        logits = dec_score_head[i](tgt)
        boxes  = refined                                     if i == 0 or not training
                 sigmoid(delta + inverse_sigmoid(prev_refined)) otherwise (not detached)
        ref    = refined.detach()

    In eval only layer ``eval_idx`` is emitted and the loop stops after it (R50-m uses
    fewer layers at test time this way).

    Initialisation as the reference: score biases ``bias_init_with_prob(0.01)``, the last
    Linear of each box MLP zero (a layer starts by keeping its reference box), xavier-uniform
    weights in ``query_pos_head``; everything else PyTorch's default (the attention modules
    have their own init).

    Args:
        query_selection: module ``(memory (B, S, C), spatial_shapes [(H, W)]) ->`` an object
            with ``target`` (B, Q, C), ``ref_unact`` (B, Q, 4), ``logits``, ``boxes``,
            ``hidden``, ``box_hidden`` (see ``query_selection.QuerySelection``).
        in_channels: channels of the encoder's maps, one per level (L = its length).
        hidden_dim: C.
        num_classes: number of classes (sigmoid classification, no background).
        num_layers: decoder layers.
        num_heads: attention heads.
        num_points: deformable sampling points per head and level.
        dim_feedforward: FFN width.
        dropout: dropout of the layers (0 in RT-DETR).
        eval_idx: the layer used in eval (negative counts from the end).
        norm: norm of ``input_proj`` ("BN" as the reference; "SyncBN" for what the
            reference's ``sync_bn`` converts it to under DDP).
    """

    def __init__(self, *, query_selection: nn.Module, in_channels: Sequence[int] = (256, 256, 256),
                 hidden_dim: int = 256, num_classes: int = 80, num_layers: int = 6, num_heads: int = 8,
                 num_points: int = 4, dim_feedforward: int = 1024, dropout: float = 0.0, eval_idx: int = -1,
                 norm: str = "BN"):
        super().__init__()
        for name, value in (("hidden_dim", hidden_dim), ("num_classes", num_classes), ("num_layers", num_layers),
                            ("num_heads", num_heads), ("num_points", num_points)):
            check_size("RTDETRDecoder", name, value)
        if not -num_layers <= eval_idx < num_layers:
            raise ValueError(f"eval_idx {eval_idx} is out of range for {num_layers} layers")
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.num_levels = len(in_channels)
        self.num_layers = num_layers
        self.eval_idx = eval_idx % num_layers
        self.input_proj = nn.ModuleList(
            Conv2d(c, hidden_dim, kernel_size=1, bias=False, norm=get_norm(norm, hidden_dim))
            for c in in_channels
        )
        layer = RTDETRDecoderLayer(hidden_dim, num_heads, self.num_levels, num_points, dim_feedforward, dropout)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, num_layers=2)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, num_layers=3) for _ in range(num_layers))
        self.query_selection = query_selection
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the decoder's own heads (not ``query_selection``, which has its own)."""
        bias = bias_init_with_prob(0.01)
        with torch.no_grad():
            for score_head, bbox_head in zip(self.dec_score_head, self.dec_bbox_head):
                nn.init.constant_(score_head.bias, bias)
                nn.init.zeros_(bbox_head.layers[-1].weight)
                nn.init.zeros_(bbox_head.layers[-1].bias)
            for linear in self.query_pos_head.layers:
                nn.init.xavier_uniform_(linear.weight)

    def flatten_features(self, features: Sequence[Tensor]) -> Tuple[Tensor, List[Tuple[int, int]]]:
        """Project and flatten the maps: (memory (B, S, C), [(H_l, W_l)]), levels in the
        given order, each row-major."""
        if len(features) != self.num_levels:
            raise ValueError(f"{len(features)} feature maps for a decoder built for {self.num_levels}")
        memory, shapes = [], []
        for proj, feat in zip(self.input_proj, features):
            x = proj(feat)
            shapes.append((x.shape[2], x.shape[3]))  # ints; symbolic under a dynamic-size export
            memory.append(x.flatten(2).transpose(1, 2))
        return torch.cat(memory, dim=1), shapes

    def forward(self, features: Sequence[Tensor], denoising: Optional["DenoisingQueries"] = None,
                extras: AbstractSet[str] = frozenset()) -> DecoderOutput:
        """
        Args:
            features: L maps (B, C_l, H_l, W_l), low stride first.
            denoising: prepared denoising queries (``embed`` (B, Nd, C), ``boxes_unact``
                (B, Nd, 4), ``attn_mask`` (Nd + Q, Nd + Q) bool True = blocked,
                ``num_denoising`` Nd) or None. The caller passes them in training only.
            extras: the optional fields (:data:`OPTIONAL_FIELDS`) to fill in every output set
                (the criterion's ``required_outputs``); the others stay None. ``ref_boxes``,
                ``offsets`` and ``attention`` exist only for decoder layers.

        Returns:
            :class:`DecoderOutput`.
        """
        unknown = set(extras) - OPTIONAL_FIELDS
        if unknown:
            raise ValueError(f"RTDETRDecoder: unknown output fields {sorted(unknown)} (known: {sorted(OPTIONAL_FIELDS)})")
        memory, shapes = self.flatten_features(features)
        selected = self.query_selection(memory, shapes)
        target, ref_unact = selected.target, selected.ref_unact
        attn_mask, num_dn = None, 0
        if denoising is not None:
            target = torch.cat([denoising.embed, target], dim=1)
            ref_unact = torch.cat([denoising.boxes_unact, ref_unact], dim=1)
            attn_mask, num_dn = denoising.attn_mask, int(denoising.num_denoising)
            if target.shape[1] != attn_mask.shape[0]:
                raise ValueError(f"attn_mask {tuple(attn_mask.shape)} does not fit {target.shape[1]} queries")

        tgt = target
        # the reference box is never trained through the layers' inputs; the encoder's box
        # gets its gradient from its own loss (``encoder.boxes``)
        ref = ref_unact.detach().sigmoid()
        prev_refined: Optional[Tensor] = None
        layers: List[DecoderLayerOutput] = []
        for i, layer in enumerate(self.layers):
            pos = self.query_pos_head(ref)
            tgt, attn = layer(tgt, pos, ref, memory, shapes, attn_mask)
            delta, box_hidden = self.dec_bbox_head[i](tgt, return_hidden=True)
            refined = torch.sigmoid(delta + inverse_sigmoid(ref))
            if self.training or i == self.eval_idx:
                if self.training and prev_refined is not None:
                    # look forward twice: the same delta on the previous layer's box with its
                    # gradient kept, so this layer's box loss also trains layer i - 1
                    boxes = torch.sigmoid(delta + inverse_sigmoid(prev_refined))
                else:
                    boxes = refined
                optional = {"hidden": tgt, "box_hidden": box_hidden, "ref_boxes": ref, "offsets": attn.offsets,
                            "attention": attn.attention}
                layers.append(DecoderLayerOutput(logits=self.dec_score_head[i](tgt), boxes=boxes, layer_index=i,
                                                 **{k: v for k, v in optional.items() if k in extras}))
                if not self.training:
                    break
            prev_refined = refined
            ref = refined.detach()

        encoder = EncoderOutput(logits=selected.logits, boxes=selected.boxes,
                                hidden=selected.hidden if "hidden" in extras else None,
                                box_hidden=selected.box_hidden if "box_hidden" in extras else None)
        return DecoderOutput(layers=layers, encoder=encoder, num_denoising=num_dn)
