"""Learning-rate schedules (multipliers of optimizer.lr) as LazyCalls.

``step_schedule(max_iter, steps)``: linear warm-up then x0.1 at each step (iterations).
``epoch_schedule(epochs, step_epochs, iters_per_epoch)``: the same in epochs, the way the
small-object papers state them (e.g. 12 epochs, steps at 8 and 11).
"""
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import MultiStepParamScheduler


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
