"""Multi-scale deformable attention (Deformable DETR), in the form RT-DETR's decoder uses it:
each query attends to a few sampled points per head and per feature level, placed relative
to a reference BOX (centre + offsets scaled by the box size).

The sampling is pure PyTorch (``F.grid_sample``), so it runs on CPU and on any accelerator;
it has no custom kernel.
"""
from __future__ import annotations

import math
from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ms_deform_attn", "MSDeformableAttention", "DeformableAttentionOutput", "SpatialShapes", "as_shape_list"]

SpatialShapes = Union[Sequence[Tuple[int, int]], Tensor]


def as_shape_list(spatial_shapes: SpatialShapes) -> List[Tuple[int, int]]:
    """(H_l, W_l) python ints from a list of pairs or an (L, 2) integer tensor; symbolic sizes
    (``torch.SymInt``, under ``torch.export`` with dynamic height/width) are kept as they are."""
    if isinstance(spatial_shapes, Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [tuple(v if isinstance(v, torch.SymInt) else int(v) for v in (h, w)) for h, w in spatial_shapes]


def ms_deform_attn(value: Tensor, spatial_shapes: SpatialShapes, sampling_locations: Tensor,
                   attention_weights: Tensor) -> Tensor:
    """Bilinearly sample every head's value maps at the given locations and take the
    attention-weighted sum over levels and points.

    Args:
        value: (B, S, M, D), S = sum_l H_l * W_l: the levels flattened row-major (index
            y * W_l + x) and concatenated in the order of ``spatial_shapes``.
        spatial_shapes: L pairs (H_l, W_l), or an (L, 2) integer tensor.
        sampling_locations: (B, Q, M, L, P, 2) normalised (x, y): (0, 0) is the top-left
            corner of the map, (1, 1) the bottom-right corner (pixel centres at (j + 0.5) / W_l).
            Locations may lie outside [0, 1]; the map is zero outside (a point partly outside
            gets the bilinear share of its in-map neighbours only).
        attention_weights: (B, Q, M, L, P).

    Returns:
        (B, Q, M * D): per query the heads' results concatenated (head-major).
    """
    shapes = as_shape_list(spatial_shapes)
    B, S, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    if len(shapes) != L:
        raise ValueError(f"{len(shapes)} spatial shapes for {L} levels of sampling locations")
    if sum(h * w for h, w in shapes) != S:
        raise ValueError(f"spatial shapes {shapes} do not add up to the {S} value tokens")

    value_per_level = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample's coordinate system is [-1, 1] over the map's outer edges with
    # align_corners=False, i.e. exactly 2 * loc - 1 for the [0, 1] convention above.
    grids = 2.0 * sampling_locations - 1.0
    samples = []
    for level, (h, w) in enumerate(shapes):
        # (B, H*W, M, D) -> (B*M, D, H, W): each head samples its own D channels
        v = value_per_level[level].permute(0, 2, 3, 1).reshape(B * M, D, h, w)
        # (B, Q, M, P, 2) -> (B*M, Q, P, 2): the "image" of the grid is Q x P points
        g = grids[:, :, :, level].transpose(1, 2).reshape(B * M, Q, P, 2)
        samples.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (B*M, D, Q, L, P) -> (B*M, D, Q, L*P), weights (B*M, 1, Q, L*P); one sum over levels
    # and points together (the order of the reference core, so float sums agree closely)
    sampled = torch.stack(samples, dim=-2).flatten(-2)
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Q, L * P)
    out = (sampled * weights).sum(-1)  # (B*M, D, Q)
    return out.reshape(B, M * D, Q).transpose(1, 2)


class DeformableAttentionOutput(NamedTuple):
    """What :class:`MSDeformableAttention` returns.

    Attributes:
        output: (B, Q, C) the attention result after ``output_proj``.
        offsets: (B, Q, M, L, P, 2) the raw ``sampling_offsets`` output Delta p, in units
            where the sampling location is ``ref_xy + offsets / P * ref_wh * 0.5``: a point
            with |Delta p_x| <= P lies inside the reference box horizontally.
        attention: (B, Q, M, L, P) the attention weights after the softmax taken jointly
            over the L * P entries of each head.
    """

    output: Tensor
    offsets: Tensor
    attention: Tensor


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention with box references (RT-DETR's decoder
    cross-attention).

    For query q, head m, level l and point p the sampling location is
    ``ref_xy(q) + Delta p(q, m, l, p) / P * ref_wh(q) * 0.5``; the P points of a head on a
    level therefore start on a line from the box centre, the last one on the box edge
    (see :meth:`reset_parameters`).

    Submodules (names as the reference, so converted weights load unrenamed):

    * ``sampling_offsets``: Linear C -> M * L * P * 2 (layout (M, L, P, xy));
    * ``attention_weights``: Linear C -> M * L * P (layout (M, L, P));
    * ``value_proj``, ``output_proj``: Linear C -> C.

    Args:
        embed_dim: C, divisible by ``num_heads``.
        num_heads: M.
        num_levels: L, the number of feature levels of the value.
        num_points: P, sampling points per head and level.
    """

    def __init__(self, embed_dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.head_dim = embed_dim // num_heads
        total = num_heads * num_levels * num_points
        self.sampling_offsets = nn.Linear(embed_dim, total * 2)
        self.attention_weights = nn.Linear(embed_dim, total)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference initialisation: the offsets start as a fixed pattern (zero weight;
        head m points in direction 2 pi m / M, scaled so that its larger component is 1,
        times p + 1 for point p, the same on every level), uniform attention (zero weight and
        bias), xavier-uniform projections with zero bias."""
        M, L, P = self.num_heads, self.num_levels, self.num_points
        with torch.no_grad():
            nn.init.zeros_(self.sampling_offsets.weight)
            theta = torch.arange(M, dtype=torch.float32) * (2.0 * math.pi / M)
            direction = torch.stack([theta.cos(), theta.sin()], dim=-1)
            direction = direction / direction.abs().max(dim=-1, keepdim=True).values
            scale = torch.arange(1, P + 1, dtype=torch.float32).view(1, 1, P, 1)
            bias = direction.view(M, 1, 1, 2).expand(M, L, P, 2) * scale
            self.sampling_offsets.bias.copy_(bias.reshape(-1))
            nn.init.zeros_(self.attention_weights.weight)
            nn.init.zeros_(self.attention_weights.bias)
            for proj in (self.value_proj, self.output_proj):
                nn.init.xavier_uniform_(proj.weight)
                nn.init.zeros_(proj.bias)

    def forward(self, query: Tensor, reference_boxes: Tensor, value: Tensor,
                spatial_shapes: SpatialShapes) -> DeformableAttentionOutput:
        """
        Args:
            query: (B, Q, C), content + positional query.
            reference_boxes: (B, Q, 4) normalised (cx, cy, w, h), the same box on every level
                (the reference's (B, Q, 1, 4) or per-level (B, Q, L, 4) are accepted too).
            value: (B, S, C) the flattened multi-level memory (before ``value_proj``).
            spatial_shapes: L pairs (H_l, W_l) of the memory's levels (or an (L, 2) tensor).

        Returns:
            :class:`DeformableAttentionOutput` (output, offsets, attention).
        """
        B, Q, _ = query.shape
        S = value.shape[1]
        M, L, P = self.num_heads, self.num_levels, self.num_points
        if reference_boxes.shape[-1] != 4:
            raise ValueError(f"reference_boxes must end with 4 (cx, cy, w, h), got {tuple(reference_boxes.shape)}")
        if reference_boxes.dim() == 3:
            reference_boxes = reference_boxes[:, :, None]  # (B, Q, 1, 4): shared by all levels
        v = self.value_proj(value).reshape(B, S, M, self.head_dim)
        offsets = self.sampling_offsets(query).reshape(B, Q, M, L, P, 2)
        # one softmax over the L * P entries of a head: levels compete with each other
        attention = F.softmax(self.attention_weights(query).reshape(B, Q, M, L * P), dim=-1)
        attention = attention.reshape(B, Q, M, L, P)
        ref = reference_boxes[:, :, None, :, None, :]  # (B, Q, 1, 1|L, 1, 4)
        locations = ref[..., :2] + offsets / P * ref[..., 2:] * 0.5
        out = ms_deform_attn(v, spatial_shapes, locations, attention)
        return DeformableAttentionOutput(self.output_proj(out), offsets, attention)
