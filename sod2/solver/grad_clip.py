"""
Optimizer pieces of DETR-style recipes (RT-DETR): gradient-norm clipping inside the
optimizer's ``step()``, and a learning-rate factor by parameter name.

**Clipping.** RT-DETR clips the gradients of all parameters to a total L2 norm of 0.1
(``clip_grad_norm_``) between ``backward()`` and ``optimizer.step()``. Detectron2's trainers
call ``optimizer.step()`` themselves, so the clipping lives in the optimizer:
:class:`ClipGradNormMixin` clips the gradients of every parameter of its groups, then steps.
``ClippedAdamW``, ``ClippedAdam`` and ``ClippedSGD`` are the mixin on torch's optimizers
(plain classes, so that a LazyConfig naming them saves to and loads from YAML).

Mixed precision (Detectron2's ``AMPTrainer``): ``GradScaler.step(optimizer)`` unscales the
gradients and then calls ``optimizer.step()`` only when they are finite, so the clipping sees
true gradients and is skipped with the step on overflow. That holds unless the optimizer says
it consumes scaled gradients itself (``_step_supports_amp_scaling``, set by torch's fused
implementations), in which case the scaler would hand over scaled gradients: the mixin
therefore always sets it to False (a fused optimizer then receives unscaled gradients, which
it supports).

**Learning-rate factor.** :class:`LRFactorByPrefix` is a picklable, YAML-friendly
``lr_factor_func`` for Detectron2's ``get_default_optimizer_params`` (e.g. the backbone at
0.1 x the base learning rate, RT-DETR's 1e-5 for 1e-4).

Config use (the ``optimizer`` node of ``configs/common/recipes/rtdetr.py`` is one)::

    optimizer = with_grad_clip(AdamW, max_norm=0.1)   # AdamW: the LazyCall of common/optim.py
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import torch

logger = logging.getLogger(__name__)

__all__ = ["ClipGradNormMixin", "ClippedAdamW", "ClippedAdam", "ClippedSGD", "clipped_optimizer_class",
           "with_grad_clip", "LRFactorByPrefix"]


class ClipGradNormMixin:
    """Clip the total gradient norm of all parameters of the optimizer's groups to
    ``clip_max_norm`` (``torch.nn.utils.clip_grad_norm_``, norm ``clip_norm_type``) at the
    start of every ``step()``. ``clip_max_norm`` 0 or None: no clipping.

    Attributes:
        grad_norm: the total norm before clipping of the last step (a 0-dim tensor, on the
            parameters' device; None before the first clipped step), for logging.
    """

    def __init__(self, params, *args, clip_max_norm: Optional[float] = 0.1, clip_norm_type: float = 2.0,
                 **kwargs):
        super().__init__(params, *args, **kwargs)
        self.clip_max_norm = float(clip_max_norm or 0.0)
        self.clip_norm_type = float(clip_norm_type)
        self.grad_norm: Optional[torch.Tensor] = None
        # GradScaler must unscale before step() (module docstring)
        self._step_supports_amp_scaling = False

    def step(self, closure=None):
        loss = None
        if closure is not None:  # the closure recomputes the gradients: clip after it
            with torch.enable_grad():
                loss = closure()
        if self.clip_max_norm > 0:
            params = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
            if params:
                self.grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_max_norm, self.clip_norm_type)
        super().step()
        return loss


class ClippedAdamW(ClipGradNormMixin, torch.optim.AdamW):
    """``torch.optim.AdamW`` with gradient-norm clipping (:class:`ClipGradNormMixin`)."""


class ClippedAdam(ClipGradNormMixin, torch.optim.Adam):
    """``torch.optim.Adam`` with gradient-norm clipping (:class:`ClipGradNormMixin`)."""


class ClippedSGD(ClipGradNormMixin, torch.optim.SGD):
    """``torch.optim.SGD`` with gradient-norm clipping (:class:`ClipGradNormMixin`)."""


_CLIPPED = {torch.optim.AdamW: ClippedAdamW, torch.optim.Adam: ClippedAdam, torch.optim.SGD: ClippedSGD}


def clipped_optimizer_class(cls) -> type:
    """The clipping version of a torch optimizer class (AdamW, Adam, SGD; a clipping class
    is returned as it is)."""
    if isinstance(cls, str):
        from detectron2.utils.registry import locate

        cls = locate(cls)
    if isinstance(cls, type) and issubclass(cls, ClipGradNormMixin):
        return cls
    if cls not in _CLIPPED:
        raise ValueError(f"with_grad_clip: no clipping version of {cls!r}; supported: "
                         f"{sorted(c.__name__ for c in _CLIPPED)} (or derive from ClipGradNormMixin)")
    return _CLIPPED[cls]


def with_grad_clip(optimizer_cfg, max_norm: float = 0.1, norm_type: float = 2.0):
    """Make an optimizer LazyCall config clip gradients (in place; returns it): its target
    becomes the clipping class (:func:`clipped_optimizer_class`) and ``clip_max_norm`` /
    ``clip_norm_type`` are set. ``max_norm`` 0 switches clipping off."""
    optimizer_cfg._target_ = clipped_optimizer_class(optimizer_cfg._target_)
    optimizer_cfg.clip_max_norm = float(max_norm)
    optimizer_cfg.clip_norm_type = float(norm_type)
    return optimizer_cfg


class LRFactorByPrefix:
    """``lr_factor_func`` for ``get_default_optimizer_params``: the factor of the first prefix
    (in the given order) that a parameter name (``"backbone.res3.0.conv1.weight"``) starts
    with; 1.0 for the others.

    Args:
        factors: ``{prefix: factor}``, e.g. ``{"backbone.": 0.1}``.
    """

    def __init__(self, factors: Dict[str, float]):
        self.factors = {str(k): float(v) for k, v in dict(factors).items()}

    def __call__(self, name: str) -> float:
        for prefix, factor in self.factors.items():
            if name.startswith(prefix):
                return factor
        return 1.0

    def __repr__(self) -> str:
        return f"LRFactorByPrefix({self.factors})"
