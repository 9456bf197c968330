"""RT-DETR's hybrid encoder: per-level input projection, the intra-scale transformer (AIFI) on
the coarsest level(s), and the cross-scale CNN fusion (CCFM: a top-down FPN then a bottom-up
PAN, both made of CSPRepLayers).

Behaviour and numbers follow the reference RT-DETR v1 (lyuwenyu/RT-DETR, ``rtdetr_pytorch``,
``src/zoo/rtdetr/hybrid_encoder.py``; facts in the project's spec, section B.3). Submodule
names are the reference's (``input_proj``, ``encoder``, ``lateral_convs``, ``fpn_blocks``,
``downsample_convs``, ``pan_blocks``, and inside them), so the reference's ``encoder.*``
state-dict entries load into :class:`HybridEncoder` with the ``encoder.`` prefix stripped
and no other renaming.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.layers import get_norm
from torch import Tensor, nn
from torch.nn import functional as F

from ...layers.rep_blocks import ConvNormAct, CSPRepLayer, get_rep_activation

__all__ = ["build_2d_sincos_position_embedding", "AIFILayer", "AIFIEncoder", "HybridEncoder"]


def _size(v):
    """A map size as a Python int, or kept symbolic (``torch.SymInt`` under ``torch.export``)."""
    return v if isinstance(v, torch.SymInt) else int(v)


def build_2d_sincos_position_embedding(w: int, h: int, embed_dim: int = 256,
                                       temperature: float = 10000.0) -> Tensor:
    """The reference's fixed 2-D sine-cosine embedding of a map of width ``w`` and height ``h``.

    With ``D = embed_dim / 4`` frequencies ``omega_k = 1 / temperature ** (k / D)``, token ``t``
    gets ``[sin(a omega), cos(a omega), sin(b omega), cos(b omega)]`` (each D wide) with
    ``a = t // h`` and ``b = t % h``: the reference meshgrids ``(arange(w), arange(h))`` with
    'ij' indexing, so its first coordinate is the slow one and runs over ``w``. Feature maps are
    flattened row-major from (H, W), so for square maps ``a`` is the row and ``b`` the column;
    for H != W this is not (row, column), and it is kept that way on purpose so that reference
    weights see the embedding they were trained with. Coordinates are raw integers.

    ``w`` and ``h`` may be symbolic sizes (``torch.SymInt``, under ``torch.export`` with
    dynamic height/width): the embedding is then computed in the exported graph from the
    feature map's shape, by these same operations. The eval-size buffers of
    :class:`HybridEncoder` are this function's output too.

    Returns:
        (1, w * h, embed_dim) float32 tensor on the CPU.
    """
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim must be divisible by 4 for the 2-D sin-cos embedding, got {embed_dim}")
    dim = embed_dim // 4
    omega = 1.0 / (temperature ** (torch.arange(dim, dtype=torch.float32) / dim))
    w, h = _size(w), _size(h)
    # the integer coordinates, exact in float32: a = t // h (slow), b = t % h (fast)
    slow = torch.arange(w, dtype=torch.float32)[:, None].expand(w, h).reshape(-1)
    fast = torch.arange(h, dtype=torch.float32)[None, :].expand(w, h).reshape(-1)
    ang_slow = slow[:, None] * omega[None, :]
    ang_fast = fast[:, None] * omega[None, :]
    return torch.cat([ang_slow.sin(), ang_slow.cos(), ang_fast.sin(), ang_fast.cos()], dim=1)[None]


class AIFILayer(nn.Module):
    """One post-norm transformer encoder layer (the reference's ``TransformerEncoderLayer``
    with ``normalize_before=False``):

    ``x = norm1(x + attn(q=x+pos, k=x+pos, v=x))``, then
    ``x = norm2(x + linear2(act(linear1(x))))``; the position embedding is added to the queries
    and keys only.

    forward: src (B, S, C), pos_embed (1 or B, S, C) or None, src_mask optional attention mask
    -> (B, S, C).
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, dim_feedforward: int = 1024,
                 dropout: float = 0.0, activation: str = "gelu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_rep_activation(activation)

    def forward(self, src: Tensor, pos_embed: Optional[Tensor] = None,
                src_mask: Optional[Tensor] = None) -> Tensor:
        qk = src if pos_embed is None else src + pos_embed
        attn, _ = self.self_attn(qk, qk, value=src, attn_mask=src_mask, need_weights=False)
        src = self.norm1(src + self.dropout1(attn))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class AIFIEncoder(nn.Module):
    """``num_layers`` :class:`AIFILayer` in sequence (attribute ``layers``), no final norm.
    Each layer is initialised on its own (the reference deep-copies one layer, so its layers
    start equal; only relevant for more than one layer, which no reference config uses)."""

    def __init__(self, num_layers: int, **layer_kwargs):
        super().__init__()
        self.layers = nn.ModuleList(AIFILayer(**layer_kwargs) for _ in range(num_layers))

    def forward(self, src: Tensor, pos_embed: Optional[Tensor] = None,
                src_mask: Optional[Tensor] = None) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos_embed=pos_embed, src_mask=src_mask)
        return src


class HybridEncoder(nn.Module):
    """RT-DETR hybrid encoder. With L input levels (low stride first) and D = ``hidden_dim``:

    1. ``input_proj[l]``: 1x1 conv (no bias) + norm, C_l -> D, no activation.
    2. AIFI: for each level index in ``use_encoder_idx`` (the stride-32 level only by default)
       the map is flattened row-major to (B, H*W, D), run through ``encoder[i]`` (an
       :class:`AIFIEncoder`) with the 2-D sin-cos position embedding, and put back.
    3. CCFM top-down, from the coarsest level down: ``lateral_convs[k]`` (1x1 ConvNormAct with
       act) on the current coarse map, whose output REPLACES that level for the bottom-up pass;
       nearest x2 upsample, concatenated as ``[upsampled, finer projected level]`` and fused
       by ``fpn_blocks[k]`` (CSPRepLayer 2D -> D, ``round(3 * depth_mult)`` blocks).
    4. CCFM bottom-up, from the finest level up: ``downsample_convs[k]`` (3x3 stride-2
       ConvNormAct with act), concatenated as ``[downsampled, lateral-conv'd coarser level]``
       and fused by ``pan_blocks[k]``.

    Position embedding: computed on the fly in training (and whenever no precomputed one
    fits). With ``eval_spatial_size = (H, W)`` the embedding for ``(W / s, H / s)`` is
    precomputed as the non-persistent buffer ``pos_embed<idx>`` (not in the state dict, as in
    the reference) and used in eval mode when the map has that size; otherwise it is computed
    for the actual size (the reference would fail on a mismatching size). Under
    ``torch.export`` with a dynamic height/width (``tools/export_model.py --dynamic``) the map
    size is symbolic and the graph computes the embedding from it, with the same function
    that built the buffer.

    Args:
        in_features: names of the backbone outputs to read, low stride first.
        in_channels, feat_strides: their channels and strides.
        hidden_dim: D, the width of every output.
        use_encoder_idx: indices into ``in_features`` of the levels that get AIFI.
        num_encoder_layers: AIFI layers per such level (0 disables AIFI).
        nhead, dim_feedforward, dropout, enc_act: the AIFI layer's attention heads, FFN width,
            dropout and FFN activation ("gelu").
        pe_temperature: temperature of the sin-cos embedding.
        expansion: CSPRepLayer hidden width factor (1.0 for R50/R101, 0.5 for R18/R34/R50-m).
        depth_mult: RepVGG blocks per CSPRepLayer = ``round(3 * depth_mult)``.
        act: activation of the CCFM convs ("silu").
        eval_spatial_size: (H, W) input size of inference, or None.
        norm: Detectron2 norm name for every conv's norm ("BN" is the reference's BatchNorm2d;
            "SyncBN" for the reference's DDP sync_bn).

    forward: {name: (B, C_l, H_l, W_l)} with H_l, W_l halving from one level to the next (input
    size a multiple of the coarsest stride) -> list of L tensors (B, D, H_l, W_l), low stride
    first.
    """

    def __init__(self, in_features: Sequence[str] = ("res3", "res4", "res5"),
                 in_channels: Sequence[int] = (512, 1024, 2048), feat_strides: Sequence[int] = (8, 16, 32),
                 hidden_dim: int = 256, use_encoder_idx: Sequence[int] = (2,), num_encoder_layers: int = 1,
                 nhead: int = 8, dim_feedforward: int = 1024, dropout: float = 0.0, enc_act: str = "gelu",
                 pe_temperature: float = 10000, expansion: float = 1.0, depth_mult: float = 1.0,
                 act: str = "silu", eval_spatial_size: Optional[Tuple[int, int]] = None, norm: str = "BN"):
        super().__init__()
        self.in_features = tuple(in_features)
        self.in_channels = tuple(int(c) for c in in_channels)
        self.feat_strides = tuple(int(s) for s in feat_strides)
        if not (len(self.in_features) == len(self.in_channels) == len(self.feat_strides)) or not self.in_features:
            raise ValueError("in_features, in_channels and feat_strides must be non-empty and equally long, "
                             f"got {self.in_features}, {self.in_channels}, {self.feat_strides}")
        num_levels = len(self.in_features)
        self.use_encoder_idx = tuple(int(i) for i in use_encoder_idx)
        if any(not 0 <= i < num_levels for i in self.use_encoder_idx):
            raise ValueError(f"use_encoder_idx {self.use_encoder_idx} out of range for {num_levels} levels")
        self.hidden_dim = hidden_dim
        self.num_encoder_layers = num_encoder_layers
        self.pe_temperature = pe_temperature
        self.eval_spatial_size = tuple(eval_spatial_size) if eval_spatial_size else None
        self.out_channels = [hidden_dim] * num_levels
        self.out_strides = list(self.feat_strides)

        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, hidden_dim, kernel_size=1, bias=False), get_norm(norm, hidden_dim))
            for c in self.in_channels)
        self.encoder = nn.ModuleList(
            AIFIEncoder(num_encoder_layers, d_model=hidden_dim, nhead=nhead, dim_feedforward=dim_feedforward,
                        dropout=dropout, activation=enc_act)
            for _ in self.use_encoder_idx)

        num_blocks = round(3 * depth_mult)
        # index k = 0 fuses the two coarsest levels (top-down) / the two finest (bottom-up)
        self.lateral_convs = nn.ModuleList(
            ConvNormAct(hidden_dim, hidden_dim, 1, 1, act=act, norm=norm) for _ in range(num_levels - 1))
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks, expansion=expansion, act=act, norm=norm)
            for _ in range(num_levels - 1))
        self.downsample_convs = nn.ModuleList(
            ConvNormAct(hidden_dim, hidden_dim, 3, 2, act=act, norm=norm) for _ in range(num_levels - 1))
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(2 * hidden_dim, hidden_dim, num_blocks, expansion=expansion, act=act, norm=norm)
            for _ in range(num_levels - 1))

        # {level index: (h, w)} of the precomputed eval embeddings
        self._eval_pos_hw: Dict[int, Tuple[int, int]] = {}
        if self.eval_spatial_size:
            H, W = self.eval_spatial_size
            for idx in self.use_encoder_idx:
                s = self.feat_strides[idx]
                h, w = H // s, W // s
                self._eval_pos_hw[idx] = (h, w)
                self.register_buffer(f"pos_embed{idx}", build_2d_sincos_position_embedding(
                    w, h, hidden_dim, pe_temperature), persistent=False)

    def position_embedding(self, level: int, h: int, w: int, device: torch.device) -> Tensor:
        """(1, h * w, D) embedding for level index ``level`` with an (h, w) map: the precomputed
        buffer in eval mode when it was built for this size, else computed (float32) by
        :func:`build_2d_sincos_position_embedding`, the function that built the buffer. Symbolic
        ``h``/``w`` (an export with dynamic height/width) always compute it, in the graph."""
        symbolic = isinstance(h, torch.SymInt) or isinstance(w, torch.SymInt)
        if not self.training and not symbolic and self._eval_pos_hw.get(level) == (h, w):
            return getattr(self, f"pos_embed{level}")
        return build_2d_sincos_position_embedding(w, h, self.hidden_dim, self.pe_temperature).to(device)

    def forward(self, features: Mapping[str, Tensor]) -> List[Tensor]:
        proj = [self.input_proj[i](features[f]) for i, f in enumerate(self.in_features)]

        if self.num_encoder_layers > 0:
            for i, idx in enumerate(self.use_encoder_idx):
                b, c, h, w = proj[idx].shape
                tokens = proj[idx].flatten(2).permute(0, 2, 1)  # (B, H*W, D), row-major
                memory = self.encoder[i](tokens, pos_embed=self.position_embedding(idx, h, w, tokens.device))
                proj[idx] = memory.permute(0, 2, 1).reshape(b, c, h, w).contiguous()

        num_levels = len(proj)
        # top-down: ``lateral[l]`` is level l after its lateral conv (coarser levels only)
        lateral: List[Optional[Tensor]] = [None] * num_levels
        coarse = proj[-1]
        for k, level in enumerate(range(num_levels - 1, 0, -1)):
            lateral[level] = self.lateral_convs[k](coarse)
            up = F.interpolate(lateral[level], scale_factor=2.0, mode="nearest")
            coarse = self.fpn_blocks[k](torch.cat([up, proj[level - 1]], dim=1))
        # the finest level leaves the top-down path as the last fpn block's output (or, with one
        # level, as its projection)
        outs = [coarse]
        for k in range(num_levels - 1):
            down = self.downsample_convs[k](outs[-1])
            outs.append(self.pan_blocks[k](torch.cat([down, lateral[k + 1]], dim=1)))
        return outs
