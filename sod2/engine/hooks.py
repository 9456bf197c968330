"""
Training hooks of sod2's recipes (Detectron2 ``HookBase``), reusable by any sod2 model.

* :class:`NoAugTail`: from iteration ``start_iter`` on, strong augmentation (Mosaic, MixUp,
  random affine of :class:`sod2.data.mosaic.MosaicDataset`) is off and the model's boolean
  attribute ``model_attr`` (YOLOX: ``use_l1``, the extra L1 box loss) is set to True.
* :func:`find_strong_augmentation`: the objects of a data loader that can switch strong
  augmentation (anything with ``set_strong_augmentation(bool)``).
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
from typing import Any, Iterable, List, Optional

from detectron2.engine import HookBase

from .ema import unwrap_model

logger = logging.getLogger(__name__)

__all__ = ["NoAugTail", "find_strong_augmentation", "set_model_flag", "build_recipe_hooks"]

# attributes through which Detectron2's loaders reach the dataset / mapper
_CHILDREN = ("dataset", "_dataset", "data_loader", "loader", "_map_func", "mapper")


def find_strong_augmentation(obj: Any, max_depth: int = 8) -> List[Any]:
    """Objects reachable from ``obj`` through a data loader's usual attributes
    (``dataset``, ``_dataset``, ``_map_func``, ``mapper``, ``data_loader``, ``loader``) that
    have a ``set_strong_augmentation`` method (e.g. ``MosaicDataset``), ``obj`` included."""
    found, seen = [], set()

    def walk(o, depth):
        if o is None or id(o) in seen or depth > max_depth or isinstance(o, (str, bytes, int, float)):
            return
        seen.add(id(o))
        if callable(getattr(type(o), "set_strong_augmentation", None)):
            found.append(o)
            return
        for name in _CHILDREN:
            child = getattr(o, name, None)
            if child is not None and not isinstance(child, (list, tuple)):
                walk(child, depth + 1)
    walk(obj, 0)
    return found


def set_model_flag(model, attr: str, value: bool = True) -> None:
    """Set the attribute ``attr`` (dotted path allowed, e.g. ``"head.use_l1"``) of the model
    inside DDP; an attribute that the model does not have is an error (a typo would
    otherwise silently create it)."""
    target = unwrap_model(model)
    *path, last = attr.split(".")
    for p in path:
        target = getattr(target, p)
    if not hasattr(target, last):
        raise AttributeError(f"NoAugTail: the model ({type(unwrap_model(model)).__name__}) has no "
                             f"attribute {attr!r}; set model_attr=None for models without it")
    setattr(target, last, value)


class NoAugTail(HookBase):
    """From iteration ``start_iter`` on: strong augmentation off, ``model.<model_attr> = True``.

    Applied before the first iteration at or after ``start_iter`` (also after ``--resume``).
    """

    def __init__(self, start_iter: int, model_attr: Optional[str] = "use_l1",
                 switches: Optional[Iterable[Any]] = None):
        """
        Args:
            start_iter: the first iteration without strong augmentation.
            model_attr: the model's boolean attribute to set True (DDP unwrapped); None: none.
            switches: objects with ``set_strong_augmentation(bool)``; None: found in
                ``trainer.data_loader`` (:func:`find_strong_augmentation`) when applied.
        """
        self.start_iter = int(start_iter)
        self.model_attr = model_attr
        self.switches = list(switches) if switches is not None else None
        self.applied = False

    def _apply(self) -> None:
        switches = self.switches if self.switches is not None else \
            find_strong_augmentation(self.trainer.data_loader)
        if not switches:
            logger.warning("NoAugTail: the data loader has no strong augmentation to switch off")
        for s in switches:
            s.set_strong_augmentation(False)
        if self.model_attr:
            set_model_flag(self.trainer.model, self.model_attr, True)
        self.applied = True
        logger.info("NoAugTail: iteration %d: strong augmentation off%s", self.trainer.iter,
                    f", model.{self.model_attr} = True" if self.model_attr else "")

    def before_train(self):
        if self.trainer.iter >= self.start_iter:  # resumed inside the tail: before workers start
            self._apply()

    def before_step(self):
        if not self.applied and self.trainer.iter >= self.start_iter:
            self._apply()


def build_recipe_hooks(cfg, ema=None) -> List[HookBase]:
    """The hooks of ``train.ema`` (``ema``: a ModelEMA or None), ``train.no_aug`` and
    ``train.multiscale``, in the order they must run after the optimizer step (before
    checkpointing and evaluation). Keys absent from ``cfg.train`` mean "off"."""
    from .ema import EMAHook
    from .multiscale import MultiScaleHook

    out: List[HookBase] = []
    if ema is not None:
        out.append(EMAHook(ema))
    no_aug = cfg.train.get("no_aug") or {}
    if no_aug.get("start_iter") is not None:
        out.append(NoAugTail(no_aug["start_iter"], model_attr=no_aug.get("model_attr", "use_l1")))
    ms = cfg.train.get("multiscale") or {}
    if ms.get("enabled", False):
        sizes = ms.get("sizes")  # an explicit list to draw from (RT-DETR), else size_range (YOLOX)
        out.append(MultiScaleHook(input_size=tuple(ms["input_size"]), size_range=tuple(ms["size_range"]),
                                  period=ms.get("period", 10), divisor=ms.get("divisor", 32),
                                  sizes=tuple(sizes) if sizes else None, mode=ms.get("mode", "bilinear")))
    return out
