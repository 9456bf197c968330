"""Batch-norm helpers for the tests of fused or frozen normalisation (RepVGG blocks, ResNet-vd)."""
import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn


def randomize_norms(module: nn.Module, seed: int = 0, spread: float = 1.0, min_var: float = 0.2) -> None:
    """Give every BatchNorm2d / FrozenBatchNorm2d of ``module`` non-trivial statistics and
    affine parameters (identity norms would hide fusion bugs): weight in [0.5, 1.5), bias and
    running mean ~ N(0, spread^2), running variance in [min_var, min_var + 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * spread)
                m.running_mean.copy_(torch.randn(n, generator=g) * spread)
                m.running_var.copy_(torch.rand(n, generator=g) + min_var)


def bn_eval(x: torch.Tensor, bn: nn.Module) -> torch.Tensor:
    """``bn`` in inference written out: (x - mean) / sqrt(var + eps) * gamma + beta per
    channel of x (N, C, H, W)."""
    shape = (1, -1, 1, 1)
    return ((x - bn.running_mean.reshape(shape)) / torch.sqrt(bn.running_var.reshape(shape) + bn.eps)
            * bn.weight.reshape(shape) + bn.bias.reshape(shape))
