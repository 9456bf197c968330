"""
Building blocks of RT-DETR's hybrid encoder (the CCFM fusion path): a conv-norm-act unit,
the RepVGG block and the CSP layer made of RepVGG blocks.

Behaviour follows the reference RT-DETR (lyuwenyu/RT-DETR, ``rtdetr_pytorch``,
``hybrid_encoder.py``): convs without bias and with "same" padding ``(k - 1) // 2``, then
BatchNorm2d (PyTorch defaults, eps 1e-5, momentum 0.1), then the activation. The
submodule names (``conv``/``norm``, ``conv1``/``conv2``/``conv3``/``bottlenecks``) are the
reference's, so that a reference state dict loads into these blocks without renaming.

All blocks take and return (N, C, H, W) tensors.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from detectron2.layers import get_norm
from torch import nn
from torch.nn import functional as F

__all__ = ["get_rep_activation", "ConvNormAct", "RepVggBlock", "CSPRepLayer"]


def get_rep_activation(name: Optional[str]) -> nn.Module:
    """"silu", "relu" (in place, as the reference), "gelu" (exact erf form) or None (Identity)."""
    if name is None:
        return nn.Identity()
    name = name.lower()
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "gelu":
        return nn.GELU()
    raise ValueError(f"unknown activation {name!r}; expected 'silu', 'relu', 'gelu' or None")


class ConvNormAct(nn.Module):
    """k x k conv ("same" padding, no bias by default) -> norm -> activation.

    (N, in_channels, H, W) -> (N, out_channels, ceil(H / stride), ceil(W / stride)).

    Args:
        norm: a Detectron2 norm name (``get_norm``: "BN", "SyncBN", "FrozenBN", ...); "BN" is
            the reference's BatchNorm2d.
        act: activation name or None (no activation).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 act: Optional[str] = None, bias: bool = False, norm: str = "BN"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2,
                              bias=bias)
        self.norm = get_norm(norm, out_channels)
        self.act = get_rep_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _fuse_conv_norm(branch: ConvNormAct) -> Tuple[torch.Tensor, torch.Tensor]:
    """The kernel and bias of one conv whose output equals ``norm(conv(x))`` with the norm in
    inference mode: ``w * g / s`` and ``b' = beta + (b - mean) * g / s`` where
    ``s = sqrt(running_var + eps)`` (works for BatchNorm2d, SyncBatchNorm and FrozenBN)."""
    norm = branch.norm
    std = (norm.running_var + norm.eps).sqrt()
    scale = norm.weight / std
    kernel = branch.conv.weight * scale.reshape(-1, 1, 1, 1)
    conv_bias = branch.conv.bias if branch.conv.bias is not None else torch.zeros_like(norm.running_mean)
    return kernel, norm.bias + (conv_bias - norm.running_mean) * scale


class RepVggBlock(nn.Module):
    """``act(norm(conv3x3(x)) + norm(conv1x1(x)))`` (reference ``RepVggBlock``: no identity
    branch, both convs without bias). (N, in_channels, H, W) -> (N, out_channels, H, W).

    :meth:`convert_to_deploy` folds the two branches (norms in inference mode) into one 3x3
    conv with bias, named ``conv``; once it exists, forward uses it alone (in training mode too,
    so convert only a model meant for inference). ``conv1``/``conv2`` are kept, as in the
    reference, so the state dict still holds the training-time weights.
    """

    def __init__(self, in_channels: int, out_channels: int, act: Optional[str] = "relu", norm: str = "BN"):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, 1, act=None, norm=norm)
        self.conv2 = ConvNormAct(in_channels, out_channels, 1, 1, act=None, norm=norm)
        self.act = get_rep_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            return self.act(self.conv(x))
        return self.act(self.conv1(x) + self.conv2(x))

    @torch.no_grad()
    def get_equivalent_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(out, in, 3, 3) kernel and (out,) bias of the single conv equal to both branches: the
        1x1 kernel sits at the centre of the 3x3 one (zero-padded by one on each side)."""
        k3, b3 = _fuse_conv_norm(self.conv1)
        k1, b1 = _fuse_conv_norm(self.conv2)
        return k3 + F.pad(k1, [1, 1, 1, 1]), b3 + b1

    @torch.no_grad()
    def convert_to_deploy(self) -> "RepVggBlock":
        """Create (or refresh) the fused 3x3 conv ``conv``; returns self."""
        kernel, bias = self.get_equivalent_kernel_bias()
        if not hasattr(self, "conv"):
            self.conv = nn.Conv2d(self.in_channels, self.out_channels, 3, 1, padding=1, bias=True).to(
                device=kernel.device, dtype=kernel.dtype)
        self.conv.weight.copy_(kernel)
        self.conv.bias.copy_(bias)
        return self


class CSPRepLayer(nn.Module):
    """CSP layer of RepVGG blocks (reference ``CSPRepLayer``), with
    ``hidden = int(out_channels * expansion)``:

    ``conv3(bottlenecks(conv1(x)) + conv2(x))`` where conv1 and conv2 are 1x1 ConvNormAct
    in -> hidden (with act), ``bottlenecks`` is ``num_blocks`` RepVggBlocks hidden -> hidden,
    the two branches are ADDED (not concatenated), and conv3 is a 1x1 ConvNormAct
    hidden -> out when hidden != out, else Identity (expansion 1.0).

    (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3, expansion: float = 1.0,
                 act: Optional[str] = "silu", norm: str = "BN"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormAct(in_channels, hidden, 1, 1, act=act, norm=norm)
        self.conv2 = ConvNormAct(in_channels, hidden, 1, 1, act=act, norm=norm)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act, norm=norm)
                                           for _ in range(num_blocks)])
        self.conv3: Union[ConvNormAct, nn.Identity]
        if hidden != out_channels:
            self.conv3 = ConvNormAct(hidden, out_channels, 1, 1, act=act, norm=norm)
        else:
            self.conv3 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))
