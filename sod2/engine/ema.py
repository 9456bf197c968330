"""
Model EMA (exponential moving average of the weights) for any sod2/Detectron2 model.

* :class:`ModelEMA` keeps an averaged copy of a model: after each optimizer step,
  every floating-point ``state_dict`` entry (parameters AND buffers such as BatchNorm
  running statistics) becomes ``v = d * v + (1 - d) * w`` with the ramped decay
  ``d(u) = decay * (1 - exp(-u / ramp))``, ``u`` = the number of updates so far including
  this one (YOLOX: decay 0.9998, ramp 2000). Integer entries (``num_batches_tracked``,
  counters) are copied from the model.
* :class:`EMAHook` updates it after every iteration (Detectron2 hook), and before training
  re-initialises it from the model when it holds no updates yet (so it starts from the
  weights that ``train.init_checkpoint`` loaded).
* :class:`EMACheckpointer` (a ``DetectionCheckpointer``) saves the EMA weights as the
  checkpoint's ``"model"`` and the training weights with the update count under ``"ema"``
  (``{"updates": int, "train_model": state_dict}``).

The rule for users: **with EMA on, every checkpoint's ``"model"`` (``model_final.pth``
included) is the EMA model**, the one evaluated during training, as in the reference
YOLOX. ``--eval-only train.init_checkpoint=.../model_final.pth``, fine-tuning and
deployment therefore use the EMA weights without anything to remember; ``--resume``
restores the training weights, the EMA weights and the update count exactly. (Resuming an
EMA run with EMA switched off continues from the EMA weights.)

Config (``sod2/engine/lazy_train.py`` wires it): ``train.ema = dict(enabled=True,
decay=0.9998, ramp=2000.0)``.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Dict, Optional

import torch
from detectron2.engine import HookBase
from torch import nn

from ..utils.convert import strip_module_prefix, upgrade_sod2_state_dict
from .checkpoint import AtomicDetectionCheckpointer

logger = logging.getLogger(__name__)

__all__ = ["ModelEMA", "EMAHook", "EMACheckpointer", "unwrap_model", "build_model_ema"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel (else ``model``)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


class ModelEMA:
    """An exponential moving average of a model's ``state_dict``.

    Attributes:
        module: the averaged copy (same class as the model, eval mode, no gradients).
        updates: the number of :meth:`update` calls so far.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0, updates: int = 0):
        """
        Args:
            model: the model to average (DDP is unwrapped); copied, so build the EMA after
                moving the model to its device.
            decay: the asymptotic decay.
            ramp: time constant of the warm-up of the decay, in updates; 0 = constant decay.
            updates: the update count to start from.
        """
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ModelEMA: decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.ramp = float(ramp)
        self.updates = int(updates)

    def decay_at(self, u: int) -> float:
        """``d(u) = decay * (1 - exp(-u / ramp))`` (``decay`` when ramp is 0)."""
        if self.ramp <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-u / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``'s current weights (call after optimizer.step())."""
        self.updates += 1
        d = self.decay_at(self.updates)
        msd = unwrap_model(model).state_dict()
        for k, v in self.module.state_dict().items():
            w = msd[k].detach()
            if v.dtype.is_floating_point:
                v.mul_(d).add_(w.to(v.dtype), alpha=1.0 - d)
            else:
                v.copy_(w)

    @torch.no_grad()
    def reset(self, model: nn.Module) -> None:
        """Copy ``model``'s weights into the EMA and set the update count to 0."""
        self.module.load_state_dict(unwrap_model(model).state_dict())
        self.updates = 0

    def state_dict(self) -> Dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


class EMAHook(HookBase):
    """Update a :class:`ModelEMA` from ``trainer.model`` after every iteration.

    Register it after ``LRScheduler`` and before ``PeriodicCheckpointer``/``EvalHook`` so
    that checkpoints and evaluations of an iteration see that iteration's update.
    """

    def __init__(self, ema: ModelEMA):
        self.ema = ema

    def before_train(self):
        if self.ema.updates == 0:  # nothing resumed: start from the (possibly loaded) model
            self.ema.reset(self.trainer.model)

    def after_step(self):
        self.ema.update(self.trainer.model)


class EMACheckpointer(AtomicDetectionCheckpointer):
    """A ``DetectionCheckpointer`` whose checkpoints hold the EMA weights as ``"model"`` and
    ``{"updates", "train_model"}`` under ``"ema"`` (see the module docstring), saved
    atomically (:class:`~sod2.engine.checkpoint.AtomicDetectionCheckpointer`).

    Loading with ``resume`` (all checkpointables, ``resume_or_load(..., resume=True)``)
    restores the training weights, the EMA weights and the update count; loading weights
    only (``init_checkpoint``) loads ``"model"``, i.e. the EMA weights, into the model.
    """

    def __init__(self, model: nn.Module, save_dir: str = "", *, ema: ModelEMA,
                 save_to_disk: Optional[bool] = None, **checkpointables):
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.ema = ema

    def save(self, name: str, **kwargs) -> None:
        train_model = self.model
        state = {"updates": self.ema.updates, "train_model": train_model.state_dict()}
        self.model = self.ema.module  # the base class writes self.model.state_dict() as "model"
        try:
            super().save(name, ema=state, **kwargs)
        finally:
            self.model = train_model

    def load(self, path: str, checkpointables=None):
        extra = super().load(path, checkpointables=checkpointables)
        wanted = checkpointables is None or "ema" in checkpointables
        if wanted and isinstance(extra, dict) and "ema" in extra:
            state = extra.pop("ema")
            with torch.no_grad():
                # "model" (just loaded into the model) is the EMA; the training weights follow
                self.ema.module.load_state_dict(self.model.state_dict())
                train_sd, _ = upgrade_sod2_state_dict(strip_module_prefix(state["train_model"]),
                                                      self.model.state_dict().keys())
                self.model.load_state_dict(train_sd)
            self.ema.updates = int(state["updates"])
            logger.info("Restored the EMA (%d updates) and the training weights from %s",
                        self.ema.updates, path)
        return extra


def build_model_ema(cfg, model: nn.Module) -> Optional[ModelEMA]:
    """A :class:`ModelEMA` of ``model`` when ``cfg.train.ema.enabled`` (keys ``decay``,
    ``ramp``), else None (also when ``train.ema`` is absent)."""
    ema_cfg = cfg.train.get("ema") or {}
    if not ema_cfg.get("enabled", False):
        return None
    return ModelEMA(model, decay=ema_cfg.get("decay", 0.9998), ramp=ema_cfg.get("ramp", 2000.0))
