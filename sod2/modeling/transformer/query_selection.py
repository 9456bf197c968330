"""RT-DETR's query selection: the encoder output head scores every memory token, and the
``num_queries`` best ones become the decoder's content queries and reference boxes.

Per memory token (all levels flattened row-major and concatenated, low stride first):

1. an anchor box: centre ``((j + 0.5) / W, (i + 0.5) / H)``, size ``grid_size * 2**level``
   in both directions, in normalised cxcywh. An anchor is *valid* iff all four values lie
   strictly inside ``(eps, 1 - eps)``; at 640 x 640 input with strides 8/16/32 the invalid
   ones are the outer ring of the stride-8 map (316 of 8400). Anchors are stored unactivated
   (``log(a / (1 - a))``), the invalid ones as ``+inf``;
2. ``output_memory = LayerNorm(Linear(memory * valid))``: the mask only applies to this head,
   the decoder cross-attends to the un-masked memory;
3. class logits ``enc_score_head(output_memory)`` and an unactivated box
   ``enc_bbox_head(output_memory) + anchor`` (``+inf`` at invalid anchors, i.e. the box
   ``(1, 1, 1, 1)`` after the sigmoid);
4. top-``num_queries`` tokens by their largest class logit (invalid tokens are not excluded
   explicitly; the zeroed memory just makes them unlikely).

These are the reference's numbers and order of operations (lyuwenyu/RT-DETR v1,
``RTDETRTransformer._generate_anchors`` / ``_get_decoder_input``), so converted weights select
the same queries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...layers.mlp import MLP, bias_init_with_prob
from ...layers.ms_deform_attn import SpatialShapes, as_shape_list
from ..checks import check_size

__all__ = ["QuerySelection", "SelectedQueries", "generate_anchors"]

def generate_anchors(spatial_shapes: SpatialShapes, grid_size: float = 0.05, eps: float = 1e-2
                     ) -> Tuple[Tensor, Tensor]:
    """Unactivated anchor boxes of every token and their validity.

    Computed in float32 on the CPU, as the reference does (then moved by the caller), so the
    values are bit-identical to it whatever device the model runs on. The sizes may be
    symbolic (``torch.SymInt``, under ``torch.export`` with dynamic height/width): the graph
    then computes the anchors from the feature shapes with these same operations (centres
    ``(j + 0.5) / W`` divide by the integer size, exact in float32 as the reference's
    ``tensor([W, H])``). The eval-size buffers of :class:`QuerySelection` are this function's
    output too.

    Args:
        spatial_shapes: L (H_l, W_l), low stride first; level l gets size ``grid_size * 2**l``.
        grid_size: anchor size of level 0 (normalised).
        eps: validity margin: valid iff ``eps < value < 1 - eps`` for all of (cx, cy, w, h).

    Returns:
        anchors (1, S, 4) float32 ``log(a / (1 - a))`` of normalised cxcywh, ``+inf`` where
        invalid; valid_mask (1, S, 1) bool. S = sum_l H_l * W_l, row-major per level.
    """
    per_level = []
    for lvl, (h, w) in enumerate(as_shape_list(spatial_shapes)):
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                torch.arange(w, dtype=torch.float32), indexing="ij")
        centres = torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1)
        sizes = torch.full_like(centres, grid_size * 2.0 ** lvl)
        per_level.append(torch.cat([centres, sizes], dim=-1).reshape(h * w, 4))
    anchors = torch.cat(per_level, dim=0)[None]
    valid_mask = ((anchors > eps) & (anchors < 1 - eps)).all(dim=-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    anchors = torch.where(valid_mask, anchors, torch.full_like(anchors, float("inf")))
    return anchors, valid_mask


@dataclass
class SelectedQueries:
    """The Q selected tokens of each image (Q = ``num_queries``), in descending score order.

    Attributes:
        target: (B, Q, C) content queries = ``hidden`` detached (the decoder's queries do not
            train the encoder head; only the "enc" loss below does).
        ref_unact: (B, Q, 4) unactivated reference boxes (head output + anchor), NOT detached;
            the decoder detaches its copy.
        logits: (B, Q, num_classes) encoder class logits, for the "enc" auxiliary loss.
        boxes: (B, Q, 4) ``sigmoid(ref_unact)`` (normalised cxcywh), not detached, for the
            "enc" loss.
        hidden: (B, Q, C) ``output_memory`` of the selected tokens (H_cls of the "enc" set).
        box_hidden: (B, Q, C) input of ``enc_bbox_head``'s last Linear (H_reg of the "enc" set).
        index: (B, Q) int64 token index of each query in the flattened memory.
    """

    target: Tensor
    ref_unact: Tensor
    logits: Tensor
    boxes: Tensor
    hidden: Tensor
    box_hidden: Tensor
    index: Tensor


def _gather_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x (B, S, D), index (B, Q) -> (B, Q, D)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class QuerySelection(nn.Module):
    """Encoder output head and top-k query selection (see the module docstring).

    Submodules (named as the reference's ``decoder.*``, so a checkpoint converts by prefix):
    ``enc_output`` = Sequential(Linear(C, C), LayerNorm(C)), ``enc_score_head`` = Linear(C,
    num_classes), ``enc_bbox_head`` = MLP(C, C, 4, 3).

    Init as the reference: xavier-uniform ``enc_output[0].weight``, score bias
    ``bias_init_with_prob(0.01)`` (-4.595), last bbox Linear all zeros (the first boxes are
    the anchors), everything else PyTorch's defaults.

    Anchors: generated for the actual feature shapes in training and whenever
    ``eval_spatial_size`` is None. With ``eval_spatial_size`` = (H, W) the anchors of the
    shapes ``(H // s, W // s)`` for ``s`` in ``feat_strides`` are precomputed into the
    non-persistent buffers ``anchors`` / ``valid_mask`` (not in checkpoints, move with the
    module) and used in eval; unlike the reference (which would fail), eval inputs of other
    shapes fall back to generating their anchors, and so does an export with dynamic
    height/width (symbolic shapes: the graph generates them).

    Args:
        hidden_dim: C, the memory's channels.
        num_classes: number of classes (sigmoid classification).
        num_queries: Q, how many tokens are selected.
        grid_size: level-0 anchor size (normalised).
        eps: anchor validity margin.
        eval_spatial_size: (H, W) input size of evaluation, or None.
        feat_strides: stride of each level (only used with ``eval_spatial_size``).
    """

    def __init__(self, hidden_dim: int = 256, num_classes: int = 80, num_queries: int = 300,
                 grid_size: float = 0.05, eps: float = 1e-2,
                 eval_spatial_size: Optional[Tuple[int, int]] = None,
                 feat_strides: Sequence[int] = (8, 16, 32)):
        super().__init__()
        for name, value in (("hidden_dim", hidden_dim), ("num_classes", num_classes), ("num_queries", num_queries)):
            check_size("QuerySelection", name, value)
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.grid_size = grid_size
        self.eps = eps
        self.feat_strides = tuple(int(s) for s in feat_strides)
        self.eval_spatial_size = tuple(eval_spatial_size) if eval_spatial_size else None

        self.enc_output = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)

        self._eval_shapes: Optional[List[Tuple[int, int]]] = None
        if self.eval_spatial_size is not None:
            # int(size / stride) as the reference (floor for positive sizes)
            self._eval_shapes = [(int(self.eval_spatial_size[0] / s), int(self.eval_spatial_size[1] / s))
                                 for s in self.feat_strides]
            anchors, valid_mask = generate_anchors(self._eval_shapes, grid_size, eps)
            self.register_buffer("anchors", anchors, persistent=False)
            self.register_buffer("valid_mask", valid_mask, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.enc_output[0].weight)
        nn.init.constant_(self.enc_score_head.bias, bias_init_with_prob(0.01))
        nn.init.zeros_(self.enc_bbox_head.layers[-1].weight)
        nn.init.zeros_(self.enc_bbox_head.layers[-1].bias)

    def get_anchors(self, spatial_shapes: SpatialShapes, device: torch.device) -> Tuple[Tensor, Tensor]:
        """(anchors (1, S, 4) float32, valid_mask (1, S, 1) bool) on ``device``: the precomputed
        buffers in eval mode for the eval shapes, else :func:`generate_anchors` (the function
        that built them) for ``spatial_shapes``; always the latter for symbolic shapes (an
        export with dynamic height/width computes the anchors in the graph)."""
        shapes = as_shape_list(spatial_shapes)
        symbolic = any(isinstance(v, torch.SymInt) for hw in shapes for v in hw)
        if not self.training and not symbolic and self._eval_shapes is not None and shapes == self._eval_shapes:
            return self.anchors.to(device), self.valid_mask.to(device)
        anchors, valid_mask = generate_anchors(shapes, self.grid_size, self.eps)
        return anchors.to(device), valid_mask.to(device)

    def forward(self, memory: Tensor, spatial_shapes: SpatialShapes) -> SelectedQueries:
        """
        Args:
            memory: (B, S, C) flattened multi-level features (levels row-major, concatenated).
            spatial_shapes: L (H_l, W_l) (or an (L, 2) integer tensor) with sum H_l W_l = S.

        Returns:
            :class:`SelectedQueries`.
        """
        B, S, _ = memory.shape
        anchors, valid_mask = self.get_anchors(spatial_shapes, memory.device)
        if anchors.shape[1] != S:
            raise ValueError(f"spatial_shapes give {anchors.shape[1]} tokens, memory has {S}")
        if S < self.num_queries:
            raise ValueError(f"only {S} memory tokens for {self.num_queries} queries: "
                             "use larger inputs or fewer queries")

        output_memory = self.enc_output(valid_mask.to(memory.dtype) * memory)
        logits = self.enc_score_head(output_memory)
        delta, box_hidden = self.enc_bbox_head(output_memory, return_hidden=True)
        coord_unact = delta + anchors

        index = torch.topk(logits.max(dim=-1).values, self.num_queries, dim=1).indices
        hidden = _gather_tokens(output_memory, index)
        ref_unact = _gather_tokens(coord_unact, index)
        return SelectedQueries(
            target=hidden.detach(),
            ref_unact=ref_unact,
            logits=_gather_tokens(logits, index),
            boxes=torch.sigmoid(ref_unact),
            hidden=hidden,
            box_hidden=_gather_tokens(box_hidden, index),
            index=index,
        )
