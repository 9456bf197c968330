"""
Training-time helpers shared by every sod2 model component (baseline layer: methods and
baselines import it, it imports nothing of sod2).

* :func:`current_storage` / :func:`put_scalars`: Detectron2's ``EventStorage`` of the
  running trainer, or nothing outside one. Components log their statistics through
  :func:`put_scalars` only, so a loss computed in a test, a notebook or an evaluation script
  (no trainer, no storage) works unchanged and logs nothing.
* :func:`zero_dependency`: ``0 x`` the sum of some modules' trainable parameters, added to a
  loss so that every parameter takes part in the graph even in an iteration that did not
  use it (no positive sample, no denoising group, ...). DistributedDataParallel then needs
  no ``find_unused_parameters=True``: those parameters get a gradient of exactly 0 and
  the loss's value does not change.
"""
from __future__ import annotations

from typing import Optional

import torch
from detectron2.utils.events import EventStorage, get_event_storage
from torch import Tensor, nn

__all__ = ["current_storage", "put_scalars", "zero_dependency"]


def current_storage() -> Optional[EventStorage]:
    """The innermost active ``EventStorage`` (the trainer's), or None outside any."""
    try:
        return get_event_storage()
    except (AssertionError, IndexError):  # IndexError: assertions stripped (python -O)
        return None


def put_scalars(*, smoothing_hint: bool = True, **scalars) -> None:
    """Put each ``name=value`` into the current ``EventStorage``; a no-op outside a trainer.

    Names with ``/`` go through a dict: ``put_scalars(**{"crpn/num_pos": 3.0})``.

    Args:
        smoothing_hint: Detectron2's hint to writers (False: log the latest value, not a
            median over the window).
        scalars: name -> number (a Python number or a 0-dim tensor).
    """
    storage = current_storage()
    if storage is None:
        return
    for name, value in scalars.items():
        storage.put_scalar(name, value, smoothing_hint=smoothing_hint)


def zero_dependency(*modules: nn.Module) -> Tensor:
    """``0.0 * sum(p.sum())`` over the trainable parameters of ``modules`` (each parameter
    once): a 0-dim tensor of value 0 whose gradient is 0 for every such parameter. Frozen
    parameters (``requires_grad=False``) take no part.

    Add it to one loss term so that DistributedDataParallel sees every parameter used in
    every iteration (module docstring). With no trainable parameter at all it is a constant
    ``tensor(0.)`` (float32, CPU), still safe to add to a loss on any device.

    Returns:
        () tensor equal to 0 (for finite parameters; a non-finite parameter gives NaN, as
        the loss would then be non-finite anyway).
    """
    seen, params = set(), []
    for m in modules:
        for p in m.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    if not params:
        return torch.zeros(())
    return 0.0 * sum(p.sum() for p in params)
