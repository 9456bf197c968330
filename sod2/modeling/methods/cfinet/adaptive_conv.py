"""Adaptive convolution (Cascade RPN; CFINet's CRPN stage 2): a 3x3 deformable convolution
whose 9 taps are placed on a box per location — its centre, edge midpoints and corners."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import DeformConv
from torch import nn

__all__ = ["adaptive_conv_offsets", "deform_conv_sampled", "AdaptiveConv"]


def adaptive_conv_offsets(boxes: torch.Tensor, stride: float, height: int, width: int) -> torch.Tensor:
    """Sampling offsets that put the taps of a 3x3 kernel on each location's box.

    For tap (dy, dx) in {-1, 0, 1}^2 at location (i, j) with box centre (cx, cy) and size
    (w, h) in image pixels: ``off_x = (cx/s - j) + (w/s/2 - 1) * dx`` and
    ``off_y = (cy/s - i) + (h/s/2 - 1) * dy``, so the tap samples the feature map at
    ``(cy/s + dy*h/s/2, cx/s + dx*w/s/2)``.

    Args:
        boxes: (N, H*W, 4) XYXY boxes, one per location in row-major order.
        stride: the feature map's stride s.
        height, width: the feature map's H and W.
    Returns:
        (N, 18, H, W) offsets in Detectron2's ``DeformConv`` / torchvision layout:
        (dy, dx) interleaved per tap, taps in row-major (ky, kx) order.
    """
    N = boxes.shape[0]
    b = boxes.reshape(N, height, width, 4) / stride
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    hw, hh = (b[..., 2] - b[..., 0]) / 2 - 1, (b[..., 3] - b[..., 1]) / 2 - 1
    jj = torch.arange(width, device=boxes.device, dtype=boxes.dtype).view(1, 1, width)
    ii = torch.arange(height, device=boxes.device, dtype=boxes.dtype).view(1, height, 1)
    taps = torch.tensor([-1.0, 0.0, 1.0], device=boxes.device, dtype=boxes.dtype)
    ky, kx = torch.meshgrid(taps, taps, indexing="ij")
    ky, kx = ky.reshape(9, 1, 1, 1), kx.reshape(9, 1, 1, 1)
    off_y = (cy - ii).unsqueeze(0) + hh.unsqueeze(0) * ky  # (9, N, H, W)
    off_x = (cx - jj).unsqueeze(0) + hw.unsqueeze(0) * kx
    return torch.stack([off_y, off_x], dim=1).permute(2, 0, 1, 3, 4).reshape(N, 18, height, width)


def deform_conv_sampled(x: torch.Tensor, offsets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Deformable convolution (v1, stride 1, "same" padding, dilation 1) by bilinear sampling.

    Mathematically the op of torchvision's ``deform_conv2d`` / Detectron2's ``DeformConv``
    (zero outside the map): each tap's shifted samples are taken with ``grid_sample`` and
    the kernel becomes a 1x1 convolution over the k*k stacked samples. On the CPU it is
    several times faster than torchvision's kernel, forward and backward.

    Args:
        x: (N, C, H, W).
        offsets: (N, 2*k*k, H, W), (dy, dx) per tap, taps row-major.
        weight: (C_out, C, k, k).
    Returns:
        (N, C_out, H, W).
    """
    N, C, H, W = x.shape
    k = weight.shape[2]
    taps = torch.arange(k, device=x.device, dtype=x.dtype) - (k // 2)
    ky, kx = torch.meshgrid(taps, taps, indexing="ij")
    off = offsets.view(N, k * k, 2, H, W)
    ys = torch.arange(H, device=x.device, dtype=x.dtype).view(1, 1, H, 1) + ky.reshape(1, -1, 1, 1) + off[:, :, 0]
    xs = torch.arange(W, device=x.device, dtype=x.dtype).view(1, 1, 1, W) + kx.reshape(1, -1, 1, 1) + off[:, :, 1]
    # normalised coordinates with align_corners=True: -1 and 1 are the first and last pixel centres
    grid = torch.stack([xs * (2.0 / max(W - 1, 1)) - 1, ys * (2.0 / max(H - 1, 1)) - 1], dim=-1)
    samples = F.grid_sample(x, grid.view(N, k * k * H, W, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=True)
    samples = samples.view(N, C * k * k, H, W)  # channel-major, then tap: matches weight's layout
    return F.conv2d(samples, weight.reshape(weight.shape[0], C * k * k, 1, 1))


class AdaptiveConv(nn.Module):
    """3x3 deformable convolution (no bias) + ReLU driven by per-location boxes.

    The layer is Detectron2's ``DeformConv`` (its CUDA kernel on GPUs). On the CPU, where
    ``DeformConv`` has no backward pass and torchvision's kernel is slow, the same weights go
    through :func:`deform_conv_sampled` (same result, checked against torchvision in tests).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = DeformConv(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        nn.init.normal_(self.conv.weight, std=0.01)

    def forward(self, x: torch.Tensor, boxes: torch.Tensor, stride: float) -> torch.Tensor:
        """
        Args:
            x: (N, C, H, W) features.
            boxes: (N, H*W, 4) XYXY boxes per location (image pixels), treated as constants.
            stride: stride of ``x``.
        """
        offsets = adaptive_conv_offsets(boxes.detach(), stride, x.shape[2], x.shape[3]).to(x.dtype)
        y = self.conv(x, offsets) if x.is_cuda else deform_conv_sampled(x, offsets, self.conv.weight)
        return torch.relu(y)
