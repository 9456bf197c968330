"""
Training hooks of sod2's recipes (Detectron2 ``HookBase``), reusable by any sod2 model.

* :class:`NoAugTail`: from iteration ``start_iter`` on, strong augmentation (Mosaic, MixUp,
  random affine of :class:`sod2.data.mosaic.MosaicDataset`) is off and, with ``l1_loss``,
  the model's extra L1 box loss is on (YOLOX: :meth:`~sod2.modeling.meta_arch.YOLOX.set_l1_loss`).
  The switches are handed over explicitly: :func:`strong_augmentation_switch` instantiates
  the training loader's ``dataset`` node and checks that it is a
  :class:`~sod2.data.mosaic.StrongAugmentationSwitch`.
* :func:`build_recipe_hooks`: the hooks that ``train.ema``, ``train.no_aug`` and
  ``train.multiscale`` ask for (what :func:`sod2.engine.lazy_train.do_train` registers).

**How the switch reaches the data loader workers.** Workers are separate processes, so
an attribute set in the trainer's process would not reach them. ``MosaicDataset`` keeps its
switch in shared memory (a ``multiprocessing`` value created with the dataset and
inherited by the workers, whether they are forked or spawned); the hook flips it in the
trainer's process and the workers read it for every image. Batches that the workers had
prepared before the flip (at most ``num_workers * prefetch_factor`` batches) are still
consumed; when training resumes past ``start_iter`` the switch is set before the workers
start, so no strong-augmentation batch is produced then.

YOLOX's iteration: the reference switches at the start of epoch ``max_epoch -
no_aug_epochs - 1`` (0-based), one epoch before its learning rate becomes flat, so
``start_iter = (max_epoch - no_aug_epochs - 1) * iters_per_epoch`` reproduces it.
"""
from __future__ import annotations

import logging
from typing import List, Protocol, Sequence, runtime_checkable

from detectron2.config import instantiate
from detectron2.engine import HookBase
from torch import nn

from ..data.mosaic import StrongAugmentationSwitch
from ..inference.sliced import SlicedInference
from .ema import unwrap_model
from .lazy_train import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["NoAugTail", "L1LossSwitch", "no_aug_settings", "check_no_aug_config", "strong_augmentation_switch",
           "training_detector", "build_recipe_hooks"]

NO_AUG_KEYS = ("start_iter", "l1_loss")


@runtime_checkable
class L1LossSwitch(Protocol):
    """A model whose extra L1 box loss can be switched (YOLOX)."""

    def set_l1_loss(self, enabled: bool) -> None:
        ...


def training_detector(model: nn.Module) -> nn.Module:
    """The detector that ``trainer.model`` trains: DDP / DataParallel unwrapped
    (:func:`~sod2.engine.ema.unwrap_model`), then a :class:`~sod2.inference.SlicedInference`
    wrapper (:meth:`~sod2.inference.SlicedInference.detector`)."""
    return SlicedInference.detector(unwrap_model(model))


def no_aug_settings(cfg) -> dict:
    """``cfg.train.no_aug`` as a dict (empty when absent); a key other than
    :data:`NO_AUG_KEYS` is a ConfigError naming it (e.g. the former ``model_attr``)."""
    no_aug = dict(cfg.train.get("no_aug") or {})
    unknown = sorted(set(no_aug) - set(NO_AUG_KEYS))
    if unknown:
        raise ConfigError(f"train.no_aug.{unknown[0]}: unknown key (train.no_aug takes {', '.join(NO_AUG_KEYS)})")
    return no_aug


def _dataset_node(cfg):
    """``cfg.dataloader.train.dataset``; ConfigError when the loader has none."""
    loader = cfg.dataloader.train
    node = loader.get("dataset") if hasattr(loader, "get") else None
    if node is None:
        raise ConfigError(f"train.no_aug.start_iter={cfg.train.no_aug.start_iter}: dataloader.train has no "
                          f"`dataset` to switch strong augmentation off in (use sod2.data.MosaicDataset as its "
                          f"dataset, or set train.no_aug.start_iter=None)")
    return node


def _not_a_switch(cfg, kind: str) -> ConfigError:
    return ConfigError(f"train.no_aug.start_iter={cfg.train.no_aug.start_iter}: dataloader.train.dataset ({kind}) "
                       f"has no set_strong_augmentation(bool) (sod2.data.MosaicDataset has); set "
                       f"train.no_aug.start_iter=None for a training set without strong augmentation")


def _no_l1_switch(model_name: str) -> ConfigError:
    return ConfigError(f"train.no_aug.l1_loss=True: the model ({model_name}) has no set_l1_loss(bool) "
                       f"(YOLOX has); set train.no_aug.l1_loss=False for it")


def check_no_aug_config(cfg) -> None:
    """The no-aug tail's checks on the config alone, nothing built (for
    :func:`sod2.engine.preflight.check_run`, before anything is written): the training
    dataset's class can switch strong augmentation (Detectron2's
    ``get_detection_dataset_dicts``, a list, cannot) and, with ``l1_loss``, the model's
    class (a sliced model's inner one) has ``set_l1_loss``. Targets that are other
    functions are checked when built (:func:`strong_augmentation_switch`).

    Raises:
        ConfigError: one line naming the key.
    """
    from detectron2.data import get_detection_dataset_dicts

    no_aug = no_aug_settings(cfg)
    if no_aug.get("start_iter") is None:
        return
    node = _dataset_node(cfg)
    target = node.get("_target_") if hasattr(node, "get") else None
    if target is get_detection_dataset_dicts:
        raise _not_a_switch(cfg, "list")
    if isinstance(target, type) and not issubclass(target, StrongAugmentationSwitch):
        raise _not_a_switch(cfg, target.__name__)
    model = cfg.model
    target = model.get("_target_") if hasattr(model, "get") else None
    if isinstance(target, type) and issubclass(target, SlicedInference):
        model = model.get("model")
        target = model.get("_target_") if hasattr(model, "get") else None
    if no_aug.get("l1_loss", True) and isinstance(target, type) and not issubclass(target, L1LossSwitch):
        raise _no_l1_switch(target.__name__)


def strong_augmentation_switch(cfg) -> StrongAugmentationSwitch:
    """Instantiate ``cfg.dataloader.train.dataset`` in place (the loader is then built around
    this very object) and return it, for :class:`NoAugTail`.

    Raises:
        ConfigError: one line naming ``train.no_aug.start_iter`` when the training loader has no
            ``dataset`` node or its dataset cannot switch strong augmentation off.
    """
    no_aug_settings(cfg)
    dataset = instantiate(_dataset_node(cfg))
    if not isinstance(dataset, StrongAugmentationSwitch):
        raise _not_a_switch(cfg, type(dataset).__name__)
    cfg.dataloader.train.dataset = dataset
    return dataset


class NoAugTail(HookBase):
    """From iteration ``start_iter`` on: strong augmentation off in every ``switches`` and,
    with ``l1_loss``, ``set_l1_loss(True)`` on the trained detector.

    Applied before the first iteration at or after ``start_iter`` (also after ``--resume``:
    then before training starts, i.e. before the data loader's workers start).
    """

    def __init__(self, start_iter: int, switches: Sequence[StrongAugmentationSwitch], l1_loss: bool = True):
        """
        Args:
            start_iter: the first iteration without strong augmentation.
            switches: the datasets (or other objects) whose strong augmentation to switch off
                (:func:`strong_augmentation_switch`); at least one.
            l1_loss: also switch the model's extra L1 loss on (the model must be an
                :class:`L1LossSwitch`, checked before training).
        """
        self.start_iter = int(start_iter)
        self.switches = list(switches)
        bad = [type(s).__name__ for s in self.switches if not isinstance(s, StrongAugmentationSwitch)]
        if not self.switches or bad:
            raise ValueError(f"NoAugTail: switches must be objects with set_strong_augmentation(bool), "
                             f"got {bad or 'none'}")
        self.l1_loss = bool(l1_loss)
        self.applied = False

    def check_model(self, model: nn.Module) -> None:
        """Raise ConfigError (one line) when ``l1_loss`` is asked of a model without
        ``set_l1_loss`` (``model`` as the trainer holds it: DDP or sliced is fine)."""
        detector = training_detector(model)
        if self.l1_loss and not isinstance(detector, L1LossSwitch):
            raise _no_l1_switch(type(detector).__name__)

    def _apply(self) -> None:
        for s in self.switches:
            s.set_strong_augmentation(False)
        if self.l1_loss:
            training_detector(self.trainer.model).set_l1_loss(True)
        self.applied = True
        logger.info("NoAugTail: iteration %d: strong augmentation off%s", self.trainer.iter,
                    ", L1 loss on" if self.l1_loss else "")

    def before_train(self):
        self.check_model(self.trainer.model)  # do_train has checked it before training already
        if self.trainer.iter >= self.start_iter:  # resumed inside the tail: before workers start
            self._apply()

    def before_step(self):
        if not self.applied and self.trainer.iter >= self.start_iter:
            self._apply()


def build_recipe_hooks(cfg, ema=None, switches: Sequence[StrongAugmentationSwitch] = ()) -> List[HookBase]:
    """The hooks of ``train.ema`` (``ema``: a ModelEMA or None), ``train.no_aug``
    (``switches``: what :func:`strong_augmentation_switch` returned) and
    ``train.multiscale``, in the order they must run after the optimizer step (before
    checkpointing and evaluation). Keys absent from ``cfg.train`` mean "off"."""
    from .ema import EMAHook
    from .multiscale import MultiScaleHook

    out: List[HookBase] = []
    if ema is not None:
        out.append(EMAHook(ema))
    no_aug = no_aug_settings(cfg)
    if no_aug.get("start_iter") is not None:
        out.append(NoAugTail(no_aug["start_iter"], switches, l1_loss=no_aug.get("l1_loss", True)))
    ms = cfg.train.get("multiscale") or {}
    if ms.get("enabled", False):
        sizes = ms.get("sizes")  # an explicit list to draw from (RT-DETR), else size_range (YOLOX)
        out.append(MultiScaleHook(input_size=tuple(ms["input_size"]), size_range=tuple(ms["size_range"]),
                                  period=ms.get("period", 10), divisor=ms.get("divisor", 32),
                                  sizes=tuple(sizes) if sizes else None, mode=ms.get("mode", "bilinear")))
    return out
