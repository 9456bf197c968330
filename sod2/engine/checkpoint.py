"""
Checkpoints: atomic saving during training, and a strict loader for inference.

* :class:`AtomicDetectionCheckpointer` is Detectron2's ``DetectionCheckpointer`` whose
  :meth:`~AtomicCheckpointerMixin.save` writes ``model_XXXXXXX.pth`` to a temporary sibling
  (:func:`sod2.data.io.atomic_path`) and renames it into place, then rewrites
  ``last_checkpoint`` the same way. A run killed during a save leaves the previous
  checkpoint and ``last_checkpoint`` as they were (no 0-byte or truncated ``.pth``; the
  temporary is removed by the next save of that name), so ``--resume`` always finds a
  whole file. :class:`sod2.engine.ema.EMACheckpointer` saves through it too.
* :func:`load_for_inference` loads a checkpoint that a user names for inference or
  evaluation (``--eval-only``, ``tools/demo.py``, ``tools/proposal_recall.py``,
  ``tools/benchmark.py``) and refuses, in one line (:class:`CheckpointMismatchError`),
  one that does not fit the model: when more than ``max_unmatched_fraction`` (default
  :data:`MAX_UNMATCHED_FRACTION`, 0.01 %) of the model's state-dict **elements** would keep
  their initial values because their tensor is missing from the checkpoint or has another
  shape there. Elements, not tensors: a fraction of tensors weighs a one-element
  ``num_batches_tracked`` like a 2.4M-element convolution, so a missing detection head (a
  few large tensors) could pass while a checkpoint without a few scalar buffers would
  fail; the fraction of elements is the fraction of the model's weights that would be
  random. 0.01 % lets a checkpoint without a handful of scalars (a frozen-BN
  ``num_batches_tracked``, a new learnable scale) load with Detectron2's warnings, and
  refuses a box predictor of another class count (5 instead of 3 classes in the
  3.9M-element R18s Faster R-CNN: 0.11 %; 80 classes in an R50 one: ~1 %), another model
  size (YOLOX-S into YOLOX-M: ~100 %) and another model kind (RT-DETR into YOLOX: 100 %). Keys of the checkpoint that the model does not have
  (``unexpected``) do not count: they leave no weight of the model random.
  Fine-tuning is the other case: ``train.init_checkpoint`` of a training run is loaded by
  Detectron2's ``resume_or_load`` as before, where a partial match is the point (ImageNet
  backbones, COCO weights for another class count) and mismatches stay warnings. The two
  are told apart by the caller: training loads leniently, inference and evaluation strictly.
* A state dict saved from a ``DistributedDataParallel`` model (every key starts with
  ``module.``) is accepted: the prefix is removed (:func:`strip_module_prefix`).
"""
from __future__ import annotations

import logging
import os
import pickle
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from fvcore.common.checkpoint import _filter_reused_missing_keys
from torch import nn

from ..data.io import atomic_path, atomic_write_text
from ..errors import UserError
from ..utils.convert import strip_module_prefix, upgrade_sod2_state_dict

logger = logging.getLogger(__name__)

__all__ = ["AtomicCheckpointerMixin", "AtomicDetectionCheckpointer", "CheckpointMismatchError",
           "LegacyLayoutMixin", "MAX_UNMATCHED_FRACTION", "load_for_inference", "strip_module_prefix", "unmatched_report"]

MAX_UNMATCHED_FRACTION = 1e-4
"""Default of :func:`load_for_inference`: at most 0.01 % of the model's state-dict elements
may stay unloaded (missing from the checkpoint or of another shape there)."""


class CheckpointMismatchError(UserError):
    """A checkpoint given for inference that does not fit the model (one line)."""


def _is_local(save_dir: str) -> bool:
    return "://" not in str(save_dir)


class AtomicCheckpointerMixin:
    """``save`` and ``tag_last_checkpoint`` of an fvcore ``Checkpointer`` written atomically:
    the ``.pth`` goes to a temporary sibling renamed into place when ``torch.save`` has
    finished, and ``last_checkpoint`` is rewritten (also atomically) only after that. Remote
    ``save_dir`` URIs (``scheme://``) keep the base class's writes."""

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        if not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        with atomic_path(save_file) as tmp:
            torch.save(data, tmp)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write_text(last_filename_basename, os.path.join(self.save_dir, "last_checkpoint"))


class LegacyLayoutMixin:
    """``_load_model`` of a ``DetectionCheckpointer`` that first renames the keys of an sod2
    checkpoint saved before a layout change (:func:`sod2.utils.convert.upgrade_sod2_state_dict`,
    only rules whose new keys the model has), logging once which. On ``--resume`` from such a
    checkpoint the weights, the iteration and the LR schedule are restored but not the
    optimizer's state (it is stored by parameter position, which the layout change may have
    moved): the optimizer restarts from its initial state, with a warning."""

    def _load_model(self, checkpoint: Any):
        sd = checkpoint.get("model") if isinstance(checkpoint, dict) else None
        if isinstance(sd, Mapping):
            new, applied = upgrade_sod2_state_dict(strip_module_prefix(sd), self.model.state_dict().keys())
            if applied:
                checkpoint["model"] = new
                logging.getLogger(__name__).warning(
                    "checkpoint in an older sod2 layout, keys renamed: %s (tools/convert_weights.py "
                    "sod2-layout rewrites the file)", "; ".join(applied))
                trainer = getattr(self, "checkpointables", {}).get("trainer")
                state = checkpoint.get("trainer")
                if trainer is not None and isinstance(state, dict) and "optimizer" in state:
                    state["optimizer"] = trainer.optimizer.state_dict()
                    logging.getLogger(__name__).warning(
                        "resuming from an older sod2 layout: iteration and LR schedule restored, the "
                        "optimizer's state (momenta) is not (stored by parameter position) and restarts")
        return super()._load_model(checkpoint)


class AtomicDetectionCheckpointer(LegacyLayoutMixin, AtomicCheckpointerMixin, DetectionCheckpointer):
    """Detectron2's ``DetectionCheckpointer`` with atomic saves (module docstring) that loads
    sod2 checkpoints of an older layout (:class:`LegacyLayoutMixin`)."""


def _numel(t) -> int:
    return int(t.numel()) if isinstance(t, torch.Tensor) else 0


def unmatched_report(model: nn.Module, missing: Sequence[str],
                     incorrect_shapes: Sequence[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]) -> Dict[str, Any]:
    """How much of ``model``'s state dict a load leaves unloaded.

    Args:
        missing: keys of the model absent from the checkpoint.
        incorrect_shapes: ``(key, shape in the checkpoint, shape in the model)``.

    Returns:
        dict with ``unmatched`` (number of state-dict elements missing or of another
        shape), ``total`` (all elements of the model's state dict), ``fraction``,
        ``tensors`` (how many tensors), ``total_tensors``.
    """
    sd = model.state_dict()
    keys = set(missing) | {k for k, _, _ in incorrect_shapes}
    keys &= set(sd)
    unmatched = sum(_numel(sd[k]) for k in keys)
    total = sum(_numel(v) for v in sd.values())
    return {"unmatched": unmatched, "total": total, "fraction": unmatched / total if total else 0.0,
            "tensors": len(keys), "total_tensors": len(sd)}


def _fmt_count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e4 else str(n)


class _StrictLoader(LegacyLayoutMixin, DetectionCheckpointer):
    """A ``DetectionCheckpointer`` that refuses, before anything is logged, a checkpoint
    that leaves more than ``max_fraction`` of the model's elements unloaded."""

    def __init__(self, model: nn.Module, path: str, max_fraction: float):
        super().__init__(model, save_to_disk=False)
        self._path = path
        self._max_fraction = max_fraction
        self.report: Optional[Dict[str, Any]] = None

    def _load_model(self, checkpoint: Any):
        sd = checkpoint.get("model")
        if not isinstance(sd, Mapping):
            raise CheckpointMismatchError(f"checkpoint {self._path}: its 'model' entry is not a state dict "
                                          f"(a {type(sd).__name__})")
        checkpoint["model"] = dict(strip_module_prefix(sd))
        incompatible = super()._load_model(checkpoint)
        missing = _filter_reused_missing_keys(self.model, incompatible.missing_keys)
        rep = unmatched_report(self.model, missing, incompatible.incorrect_shapes)
        self.report = rep
        if rep["fraction"] > self._max_fraction:
            first = ""
            if incompatible.incorrect_shapes:
                k, shape_ckpt, shape_model = incompatible.incorrect_shapes[0]
                first = f"; e.g. {k}: {tuple(shape_ckpt)} in the checkpoint, {tuple(shape_model)} in the model"
            elif missing:
                first = f"; e.g. {sorted(missing)[0]} is not in the checkpoint"
            n_shape = len(incompatible.incorrect_shapes)
            raise CheckpointMismatchError(
                f"checkpoint {self._path} does not fit the model "
                f"({_model_name(self.model)}): {rep['tensors']} of its {rep['total_tensors']} tensors "
                f"({n_shape} of another shape, {rep['tensors'] - n_shape} missing) = "
                f"{_fmt_count(rep['unmatched'])} of {_fmt_count(rep['total'])} weights "
                f"({100 * rep['fraction']:.3g}%) would stay random, more than the "
                f"{100 * self._max_fraction:g}% allowed for inference{first}. Is it a checkpoint of "
                f"another model size, kind or class count? (To fine-tune from it, train with "
                f"train.init_checkpoint=...)")
        return incompatible


def _model_name(model: nn.Module) -> str:
    """The model's class name; a SlicedInference wrapper names the model it wraps."""
    inner = model.__dict__.get("_modules", {}).get("model")
    name = type(model).__name__
    return f"{name}({type(inner).__name__})" if name == "SlicedInference" and inner is not None else name


def load_for_inference(model: nn.Module, path: str,
                       max_unmatched_fraction: float = MAX_UNMATCHED_FRACTION) -> Dict[str, Any]:
    """Load the checkpoint ``path`` into ``model`` for inference or evaluation, strictly.

    Detectron2's ``DetectionCheckpointer`` reads it (its formats: ``.pth`` with or
    without a ``"model"`` entry, Detectron2 ``.pkl``, URLs, DDP models), after removing a
    ``module.`` prefix that every key has. Mismatches within the allowed fraction are
    logged as Detectron2 logs them.

    Args:
        model: the model (DDP or :class:`~sod2.inference.SlicedInference` wrappers are fine:
            their state dicts are the model's).
        path: the checkpoint file; must be given.
        max_unmatched_fraction: the largest fraction of the model's state-dict elements
            that may stay unloaded (missing from the checkpoint, or of another shape).

    Returns:
        the report of :func:`unmatched_report` (``fraction`` etc.).

    Raises:
        CheckpointMismatchError: no path, no such file, a file that is not a checkpoint,
            or more than ``max_unmatched_fraction`` unloaded (one line naming the file,
            the counts and the first mismatched key).
    """
    if not path:
        raise CheckpointMismatchError("no checkpoint given (set train.init_checkpoint=<file.pth>)")
    if _is_local(path) and not os.path.isfile(path):
        what = "a directory, not a checkpoint file" if os.path.isdir(path) else "no such file"
        raise CheckpointMismatchError(f"checkpoint {path}: {what}")
    loader = _StrictLoader(model, path, max_unmatched_fraction)
    try:
        loader.load(path, checkpointables=[])
    except CheckpointMismatchError:
        raise
    except (OSError, RuntimeError, EOFError, ValueError, AssertionError, pickle.UnpicklingError) as e:
        text = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointMismatchError(f"checkpoint {path}: cannot read it as a checkpoint "
                                      f"({type(e).__name__}: {text})") from e
    rep = loader.report or unmatched_report(model, [], [])
    if rep["unmatched"]:
        logger.warning("Loaded %s: %d tensors (%.3f%% of the weights) not in it or of another shape, "
                       "within the %g%% allowed", path, rep["tensors"], 100 * rep["fraction"],
                       100 * max_unmatched_fraction)
    return rep
