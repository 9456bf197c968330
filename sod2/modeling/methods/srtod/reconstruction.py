"""
SR-TOD's pieces (projects/SR-TOD/README.md): a reconstruction head rebuilds the network-input
image from one FPN level; where it fails (the difference map) is where small objects are; the
thresholded difference map enhances that level (DGFE).

Pieces, each replaceable:

* :class:`ReconstructionHead`: ``Up = ReLU(Conv3x3(ReLU(Conv3x3(TConv4x4/2(x)))))`` halving
  the channels per Up (2 Ups from P2, 3 from P3), then ``Sigmoid(Conv3x3(.))`` to RGB.
* :func:`difference_map`: mean over colours of ``|I_r - I_o|`` (or of their high-frequency
  parts, the paper's FFT ablation).
* :class:`LearnableThreshold`: ``D_b = (sign(D - t) + 1) / 2`` with a learnable ``t`` that
  really learns (straight-through sigmoid surrogate); the official zero-gradient sign is an
  option.
* :class:`DGFE`: CBAM channel attention ``w`` and ``P' = P * w * (1 + Resize_nearest(D_b))``
  (or the paper's ablation variants).

:class:`~sod2.modeling.methods.srtod.hook.SRTOD` puts them together as the detector's
feature hook.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ReconstructionHead", "difference_map", "LearnableThreshold", "DGFE", "nearest_resize"]


class _Up(nn.Module):
    """TConv 4x4/2 (bias) halving the channels, then two bias-free 3x3 convs, ReLUs."""

    def __init__(self, c: int):
        super().__init__()
        self.tconv = nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1)
        self.conv1 = nn.Conv2d(c // 2, c // 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c // 2, c // 2, 3, padding=1, bias=False)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(self.tconv(x)))))


class ReconstructionHead(nn.Module):
    """Feature map (N, C, H/s, W/s) -> reconstructed RGB image (N, 3, H, W) in [0, 1].

    Args:
        in_channels: C (256 for a standard FPN).
        num_up: log2 of the level's stride s (2 for P2, 3 for P3).
        reduce_to: None for the paper's head (C -> C/2 -> C/4 ...). An int selects sod2's
            LIGHT variant (not the paper's): a 1x1 conv C -> reduce_to first, then the Ups
            halve from there; e.g. 64 cuts the head's cost ~16x.
    """

    def __init__(self, in_channels: int = 256, num_up: int = 2, reduce_to: Optional[int] = None):
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, reduce_to, 1) if reduce_to else None
        ups, c = [], reduce_to or in_channels
        for _ in range(num_up):
            ups.append(_Up(c))
            c //= 2
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(c, 3, 3, padding=1)
        self.stride = 2 ** num_up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reduce is not None:
            x = self.reduce(x)
        return torch.sigmoid(self.out(self.ups(x)))

    def forward_sampled(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction at pixels (s*i, s*j) only, ``forward(x)[..., ::s, ::s]``: the
        pixels a nearest resize to the level's size reads. The output conv runs with stride
        s (1/s^2 of its work) and the sigmoid and the difference map on 1/s^2 of the
        pixels; the Ups run in full: the strided 3x3 output conv reads rows and columns
        s*i - 1 .. s*i + 1 of the last Up's output (9/16 of it for s = 4) and those need every
        pixel before it (computing only the 9/16 through gathers was measured slower on the CPU).

        Args:
            x: (N, C, h, w) the level's features.
        Returns:
            (N, 3, h, w).
        """
        if self.reduce is not None:
            x = self.reduce(x)
        return torch.sigmoid(F.conv2d(self.ups(x), self.out.weight, self.out.bias, stride=self.stride,
                                      padding=1))


def _high_pass(x: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Remove frequencies below ``cutoff`` (fraction of Nyquist) with a centred FFT mask."""
    H, W = x.shape[-2:]
    f = torch.fft.fftshift(torch.fft.fft2(x.float()), dim=(-2, -1))
    yy = torch.linspace(-1, 1, H, device=x.device).view(H, 1)
    xx = torch.linspace(-1, 1, W, device=x.device).view(1, W)
    keep = ((yy ** 2 + xx ** 2).sqrt() >= cutoff).to(f.dtype)
    return torch.fft.ifft2(torch.fft.ifftshift(f * keep, dim=(-2, -1))).real.to(x.dtype)


def difference_map(rec: torch.Tensor, target: torch.Tensor, mode: str = "pixel",
                   cutoff: float = 0.1) -> torch.Tensor:
    """D = mean over colours of |I_r - I_o| (mode "pixel"), or of the high-frequency parts
    of both images (mode "fft", the paper's ablation; ``cutoff`` as a fraction of Nyquist).

    Args:
        rec, target: (N, 3, H, W) in [0, 1].
    Returns:
        (N, 1, H, W).
    """
    if mode == "pixel":
        return (rec - target).abs().mean(dim=1, keepdim=True)
    if mode == "fft":
        return (_high_pass(rec, cutoff) - _high_pass(target, cutoff)).abs().mean(dim=1, keepdim=True)
    raise ValueError(f"difference mode must be 'pixel' or 'fft', got {mode!r}")


class _SignWithSurrogate(torch.autograd.Function):
    """Forward: (sign(d - t) + 1) / 2. Backward: the derivative of sigmoid((d - t) / tau),
    summed over the pixels for t and multiplied by ``t_scale``."""

    @staticmethod
    def forward(ctx, d, t, tau: float, to_d: bool, t_scale: float):
        ctx.save_for_backward(d, t)
        ctx.tau, ctx.to_d, ctx.t_scale = tau, to_d, t_scale
        return (torch.sign(d - t) + 1) / 2

    @staticmethod
    def backward(ctx, g):
        d, t = ctx.saved_tensors
        s = torch.sigmoid((d - t) / ctx.tau)
        ds = g * s * (1 - s) / ctx.tau
        return (ds if ctx.to_d else None), (-ds.sum() * ctx.t_scale).reshape(t.shape), None, None, None


class LearnableThreshold(nn.Module):
    """``D_b = (sign(D - t) + 1) / 2`` with a learnable scalar ``t`` (parameter ``thresh``).

    Args:
        init: initial t (SR-TOD: 4/255 VisDrone, 3/255 AI-TOD, 40/255 DroneSwarms).
        grad: "surrogate" (default: straight-through, the forward stays the exact step and
            the backward uses the slope of ``sigmoid((D - t) / tau)``) or "zero" (the
            official code's plain sign: t never learns).
        tau: width of the surrogate, in difference-map units.
        grad_to_difference: let the surrogate gradient also reach D (and through it the
            reconstruction head and backbone); default: t only, so the head is trained by
            the reconstruction loss alone, as in the official code.
        grad_scale: how t's gradient (a sum over every pixel of the map) is scaled:
            "sqrt" (default) divides it by sqrt(number of elements of D), as learned step
            sizes are in LSQ (Esser et al., ICLR 2020), so that t moves at a rate that does
            not grow with the image and batch size; "none" keeps the raw sum (with it t fell
            from 16/255 to -57/255 within 80 iterations on the synthetic data, where D_b is 1
            everywhere and its gradient vanishes); a float multiplies the sum.
    """

    def __init__(self, init: float = 4 / 255, grad: str = "surrogate", tau: float = 0.01,
                 grad_to_difference: bool = False, grad_scale="sqrt"):
        super().__init__()
        if grad not in ("surrogate", "zero"):
            raise ValueError(f"grad must be 'surrogate' or 'zero', got {grad!r}")
        if not (grad_scale in ("sqrt", "none") or isinstance(grad_scale, (int, float))):
            raise ValueError(f"grad_scale must be 'sqrt', 'none' or a number, got {grad_scale!r}")
        self.thresh = nn.Parameter(torch.tensor(float(init)))
        self.grad, self.tau, self.grad_to_difference = grad, tau, grad_to_difference
        self.grad_scale = grad_scale

    def _t_scale(self, d: torch.Tensor) -> float:
        if self.grad_scale == "sqrt":
            return 1.0 / math.sqrt(max(d.numel(), 1))
        if self.grad_scale == "none":
            return 1.0
        return float(self.grad_scale)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> binary map (N, 1, H, W); exactly 0.5 where D == t, as sign(0) = 0."""
        t = self.thresh.to(d.dtype)
        if self.grad == "zero":
            return (torch.sign(d.detach() - t) + 1) / 2
        return _SignWithSurrogate.apply(d if self.grad_to_difference else d.detach(), t, self.tau,
                                        self.grad_to_difference, self._t_scale(d))


def nearest_resize(x: torch.Tensor, size) -> torch.Tensor:
    """PyTorch's nearest resize (output pixel i reads input floor(i * in / out)): from 4H to
    H it takes the top-left pixel of every 4x4 cell."""
    return F.interpolate(x, size=tuple(size), mode="nearest")


class DGFE(nn.Module):
    """Difference-map guided feature enhancement of one FPN level.

    Modes: "attention" (the paper's default: ``P * w * (1 + D')`` with CBAM channel weights
    ``w = sigmoid(MLP(avgpool P) + MLP(maxpool P))``, MLP C -> C/ratio -> C shared),
    "multiply" (``P * (1 + D')``: no channel attention), "concat" (``conv1x1([P * w, D'])``,
    initialised to pass ``P * w`` through). ``D'`` is the binary map resized (nearest) to
    the level.
    """

    def __init__(self, channels: int = 256, ratio: int = 16, mode: str = "attention"):
        super().__init__()
        if mode not in ("attention", "multiply", "concat"):
            raise ValueError(f"DGFE mode must be attention, multiply or concat, got {mode!r}")
        self.mode = mode
        hidden = max(channels // ratio, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True),
                                 nn.Linear(hidden, channels))
        if mode == "concat":
            self.fuse = nn.Conv2d(channels + 1, channels, 1)
            with torch.no_grad():
                self.fuse.weight.zero_()
                self.fuse.weight[:, :channels, 0, 0] = torch.eye(channels)
                self.fuse.bias.zero_()

    def channel_weights(self, p: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, 1, 1)."""
        a = self.mlp(p.mean(dim=(2, 3)))
        m = self.mlp(p.amax(dim=(2, 3)))
        return torch.sigmoid(a + m)[:, :, None, None]

    def forward(self, p: torch.Tensor, d_small: torch.Tensor) -> torch.Tensor:
        """
        Args:
            p: (N, C, H, W) the level's features.
            d_small: (N, 1, H, W) the binary difference map at the level's size.
        """
        if self.mode == "multiply":
            return p * (1 + d_small)
        w = self.channel_weights(p)
        if self.mode == "attention":
            return p * w * (1 + d_small)
        return self.fuse(torch.cat([p * w, d_small], dim=1))
