"""Learning-rate schedules (multipliers of optimizer.lr) as LazyCalls.

``step_schedule(max_iter, steps)``: linear warm-up then x0.1 at each step (iterations).
``epoch_schedule(epochs, step_epochs, iters_per_epoch)``: the same in epochs, the way the
small-object papers state them (e.g. 12 epochs, steps at 8 and 11).
``warmcos_schedule(max_iter, warmup_iters, no_aug_iters)``: YOLOX's "yoloxwarmcos"
(quadratic warm-up from 0, cosine to ``min_lr_ratio``, flat for the no-augmentation tail);
``warmcos_epoch_schedule(epochs, iters_per_epoch, warmup_epochs=5, no_aug_epochs=15)`` in
epochs, as YOLOX states it.
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler

from sod2.solver import WarmupCosineNoAugParamScheduler


def step_schedule(max_iter, steps, warmup_iters=500, warmup_factor=0.001, gamma=0.1):
    return L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[gamma ** i for i in range(len(steps) + 1)],
            milestones=list(steps),
            num_updates=max_iter,
        ),
        warmup_length=min(warmup_iters / max_iter, 1.0),
        warmup_method="linear",
        warmup_factor=warmup_factor,
    )


def epoch_schedule(epochs, step_epochs, iters_per_epoch, warmup_iters=500, warmup_factor=0.001):
    return step_schedule(epochs * iters_per_epoch, [e * iters_per_epoch for e in step_epochs],
                         warmup_iters, warmup_factor)


def warmcos_schedule(max_iter, warmup_iters, no_aug_iters=0, min_lr_ratio=0.05, warmup_power=2.0):
    return L(WarmupCosineNoAugParamScheduler)(
        total_iters=max_iter, warmup_iters=warmup_iters, no_aug_iters=no_aug_iters,
        min_lr_ratio=min_lr_ratio, warmup_power=warmup_power, warmup_start=0.0,
    )


def warmcos_epoch_schedule(epochs, iters_per_epoch, warmup_epochs=5, no_aug_epochs=15, min_lr_ratio=0.05):
    return warmcos_schedule(epochs * iters_per_epoch, warmup_epochs * iters_per_epoch,
                            no_aug_epochs * iters_per_epoch, min_lr_ratio)
