"""
Checks shared by sod2's detectors: non-finite values and nonsensical sizes.

* :func:`finite_cost`: the matching cost that sod2's assigners and matchers (SimOTA, the
  Hungarian matcher) decide on. An entry computed from a non-finite prediction (NaN, +-inf:
  a diverging model) becomes a finite value BELOW every finite entry of the matrix, so that
  the assignment is deterministic and never crashes (scipy refuses NaN, torch's BCE refuses
  probabilities outside [0, 1]), and the broken predictions are the ones matched: their
  non-finite values then enter the losses, which are computed on the raw predictions, and
  Detectron2's trainer stops with "Loss became infinite or NaN at iteration=N!" and the loss
  dict. (A value above every finite entry would steer the matching away from them and could
  leave the loss finite: a NaN prediction silently dropped, training going on with it.) A
  matrix without non-finite entries is returned as it is.
* :func:`warn_non_finite_images`: one warning line when a batch of network inputs holds
  NaN or infinite pixels (one ``torch.isfinite(x).all()`` on the batch tensor when they are
  all finite). Every sod2 detector calls it in its ``preprocess_image``, in training and at
  inference (:class:`NonFiniteInputCheckMixin` for Detectron2's meta-architectures).
* :func:`check_size`: constructor arguments that must be positive integers (``num_classes``
  and the like) raise :class:`sod2.errors.UserError` with one line naming the class and the
  argument.
"""
from __future__ import annotations

import logging
import numbers
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..errors import UserError

__all__ = ["finite_cost", "warn_non_finite_images", "NonFiniteInputCheckMixin", "check_size"]

logger = logging.getLogger(__name__)


def finite_cost(cost: Tensor) -> Tensor:
    """``cost`` with its non-finite entries (NaN, +inf and -inf alike) replaced by
    ``-(2 * max|finite entry| + 1)`` (-1 if no entry is finite; at least the dtype's lowest
    value): below every finite entry, so a pair with a non-finite cost is matched before any
    finite pair, and an assignment with more such pairs always costs less (the module
    docstring says why).

    Args:
        cost: a cost matrix of any shape (floating point).
    Returns:
        ``cost`` itself if every entry is finite (the same tensor, bit for bit), else a new
        tensor of the same shape and dtype.
    """
    finite = torch.isfinite(cost)
    if bool(finite.all()):
        return cost
    if bool(finite.any()):
        fill = -min(2.0 * float(cost[finite].abs().max()) + 1.0, torch.finfo(cost.dtype).max)
    else:
        fill = -1.0
    return torch.where(finite, cost, torch.full_like(cost, fill))


def warn_non_finite_images(images: Tensor, owner: str, batched_inputs: Optional[Sequence[Dict]] = None,
                           training: bool = False) -> bool:
    """Log one warning line if the batch of network inputs holds NaN or infinite values.

    The detections (or losses) of such an image are meaningless: the value spreads through
    every convolution. sod2's readers refuse non-finite image files; this catches inputs
    built in memory (a caller's own tensors, a broken transform). In training it only warns
    too: the NaN reaches the losses and Detectron2's trainer stops on them ("Loss became
    infinite or NaN"), this line naming the cause just before; one rule for both modes.

    Args:
        images: (N, C, H, W) the batched, normalised network input (the padding is finite).
        owner: the model's name for the message ("YOLOX", "RTDETR", ...).
        batched_inputs: the N input dicts; their ``file_name`` (when present) names the
            images in the message.
        training: the model is training (the message says "losses", else "detections").
    Returns:
        True if a warning was logged.
    """
    if not images.is_floating_point() or bool(torch.isfinite(images).all()):
        return False
    bad = (~torch.isfinite(images)).reshape(images.shape[0], images.shape[1], -1).any(dim=1)  # (N, H*W)
    per_image = bad.sum(dim=1).tolist()
    total = sum(per_image)
    which = [i for i, n in enumerate(per_image) if n]
    names = []
    for i in which:
        name = batched_inputs[i].get("file_name") if batched_inputs is not None and i < len(batched_inputs) else None
        names.append(f"{i} ({name})" if name else str(i))
    shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
    logger.warning("%s: %d of %d input images contain non-finite (NaN or inf) pixels (%d pixel%s in all; "
                   "batch index %s): their %s are meaningless", owner, len(which), images.shape[0],
                   total, "" if total == 1 else "s", shown, "losses" if training else "detections")
    return True


class NonFiniteInputCheckMixin:
    """Mixin for Detectron2 meta-architectures (``GeneralizedRCNN``, ``RetinaNet`` and their
    subclasses): ``preprocess_image`` then warns about non-finite input pixels
    (:func:`warn_non_finite_images`), in training and at inference. Put it before the
    Detectron2 class: ``class SOD2RCNN(NonFiniteInputCheckMixin, GeneralizedRCNN)``."""

    def preprocess_image(self, batched_inputs: List[Dict[str, Tensor]]):
        images = super().preprocess_image(batched_inputs)
        warn_non_finite_images(images.tensor, type(self).__name__, batched_inputs, self.training)
        return images


def check_size(owner: str, name: str, value, minimum: int = 1) -> int:
    """``value`` if it is an integer >= ``minimum``, else :class:`UserError` (one line:
    ``"<owner>: <name> must be an integer >= <minimum>, got <value!r>"``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise UserError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
