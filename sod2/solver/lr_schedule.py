"""
Learning-rate multipliers as fvcore ``ParamScheduler`` s (Detectron2's ``lr_multiplier``).

:class:`WarmupCosineNoAugParamScheduler` is YOLOX's "yoloxwarmcos" schedule: a polynomial
(quadratic by default) warm-up from ``warmup_start`` to 1, a half cosine from 1 down to
``min_lr_ratio``, and a flat ``min_lr_ratio`` for the last ``no_aug_iters`` iterations
(the no-augmentation tail).

Detectron2's ``hooks.LRScheduler`` calls the scheduler with ``where = i / train.max_iter``
to get the multiplier of iteration ``i`` (``i = 0`` is the first), so ``total_iters`` must
equal ``train.max_iter``; the learning rate of iteration ``i`` is then
``optimizer.lr * f(i)``, which is the reference trainer's ``lr(i)`` (it starts from
``warmup_lr = 0`` and sets ``lr(i + 1)`` after step ``i``).
"""
from __future__ import annotations

import math

from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["WarmupCosineNoAugParamScheduler"]


class WarmupCosineNoAugParamScheduler(ParamScheduler):
    """Multiplier ``f(i)`` of iteration ``i`` (``W`` = warmup_iters, ``T`` = total_iters,
    ``N`` = no_aug_iters, ``m`` = min_lr_ratio, ``s`` = warmup_start, ``p`` = warmup_power):

    * ``i <= W``:            ``s + (1 - s) * (i / W) ** p``
    * ``i >= T - N``:        ``m``
    * otherwise:             ``m + 0.5 * (1 - m) * (1 + cos(pi * (i - W) / (T - W - N)))``

    The pieces meet continuously at ``i = W`` and ``i = T - N``.
    """

    def __init__(self, total_iters: int, warmup_iters: int, no_aug_iters: int = 0,
                 min_lr_ratio: float = 0.05, warmup_power: float = 2.0, warmup_start: float = 0.0):
        """
        Args:
            total_iters: length of training in iterations (``train.max_iter``).
            warmup_iters: warm-up length (YOLOX: 5 epochs).
            no_aug_iters: flat tail at ``min_lr_ratio`` (YOLOX: 15 epochs).
            min_lr_ratio: the final multiplier (YOLOX: 0.05).
            warmup_power: 2 = quadratic warm-up (YOLOX), 1 = linear.
            warmup_start: multiplier at iteration 0 (YOLOX: ``warmup_lr = 0``).
        """
        if total_iters <= 0 or warmup_iters < 0 or no_aug_iters < 0:
            raise ValueError("WarmupCosineNoAugParamScheduler: iteration counts must be >= 0 "
                             f"(total {total_iters}, warm-up {warmup_iters}, no-aug {no_aug_iters})")
        if warmup_iters + no_aug_iters >= total_iters:
            raise ValueError(f"WarmupCosineNoAugParamScheduler: warm-up ({warmup_iters}) + no-aug tail "
                             f"({no_aug_iters}) leave no cosine phase in {total_iters} iterations")
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        self.no_aug_iters = int(no_aug_iters)
        self.min_lr_ratio = float(min_lr_ratio)
        self.warmup_power = float(warmup_power)
        self.warmup_start = float(warmup_start)

    def multiplier_at(self, it: float) -> float:
        """``f(it)`` for an iteration number (float allowed)."""
        W, T, N, m = self.warmup_iters, self.total_iters, self.no_aug_iters, self.min_lr_ratio
        if W > 0 and it <= W:
            return self.warmup_start + (1.0 - self.warmup_start) * (it / W) ** self.warmup_power
        if it >= T - N:
            return m
        return m + 0.5 * (1.0 - m) * (1.0 + math.cos(math.pi * (it - W) / (T - W - N)))

    def __call__(self, where: float) -> float:
        return self.multiplier_at(where * self.total_iters)
