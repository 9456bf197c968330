"""
Checks of a training or evaluation run before anything starts or is written.

``tools/lazyconfig_train_net.py`` runs :func:`check_run` in its main process, after the
config and its overrides are loaded and before ``launch`` starts workers and
``default_setup`` writes ``log.txt``/``config.yaml``; :func:`sod2.engine.lazy_train.main`
runs it too when called directly. Each refusal is a :class:`~sod2.errors.UserError` whose
message is one line naming the config key, dataset, file or annotation:

* the config has ``model``, ``train`` and ``dataloader``;
* every ``num_classes`` in ``cfg.model`` is an integer >= 1;
* training: ``train.max_iter`` is an integer >= 1; with ``train.no_aug.start_iter`` the
  training dataset can switch strong augmentation off and, with ``train.no_aug.l1_loss``,
  the model has ``set_l1_loss`` (:func:`sod2.engine.hooks.check_no_aug_config`);
* ``--eval-only``: ``train.init_checkpoint`` is set and is a file;
* ``train.output_dir`` is a folder (or can be created) and is writable;
* the datasets of ``dataloader.train`` (training) and ``dataloader.test`` (when there is
  an evaluator) are registered, load (a registered dataset whose files are absent fails
  with its loader's one-line error), list image files that exist (the first missing one
  is named with the count), and have category ids in ``0 .. num_classes - 1`` (``-1``
  marks sod2's class-agnostic ignore regions); a training set without a single object
  annotation (all images empty, or only crowd/ignore boxes) is refused.

The cost: the datasets are loaded once here. In a single-process run the loaded dicts are
handed to the data loader's first ``DatasetCatalog.get`` of each name (so a dataset is
not read twice); worker processes of a multi-process run load them again, as Detectron2's
workers always do. Only file existence is checked here (a ``stat`` per image); decoding
checks stay with the loaders (:func:`sod2.data.datasets.common.finish_records`).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Tuple

from omegaconf import OmegaConf

from ..errors import UserError
from .lazy_train import _short
from .output_lock import check_output_dir

logger = logging.getLogger(__name__)

__all__ = ["check_run", "model_num_classes", "dataset_names"]


def _walk(node, path: str):
    """(path, key, value) of every key in a config tree (dicts and lists)."""
    if OmegaConf.is_dict(node) or isinstance(node, dict):
        for k in node.keys():
            try:
                v = node[k]
            except Exception:  # an interpolation that does not resolve: not ours to judge
                continue
            here = f"{path}.{k}" if path else str(k)
            yield here, k, v
            yield from _walk(v, here)
    elif OmegaConf.is_list(node) or isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def model_num_classes(cfg) -> Optional[Tuple[str, int]]:
    """The model's number of classes: ``(key, value)`` of the ``num_classes`` closest to the
    root of ``cfg.model`` (``model.num_classes``, ``model.roi_heads.num_classes``,
    ``model.model.head.num_classes`` of a sliced model ...), None if it has none.

    Raises:
        UserError: a ``num_classes`` that is not an integer >= 1 (the first one found).
    """
    found = []
    for path, key, value in _walk(cfg.model, "model"):
        if key != "num_classes":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{path}={value!r}: the number of classes must be an integer >= 1")
        found.append((path.count(".") + path.count("["), path, value))
    if not found:
        return None
    _, path, value = min(found)
    return path, value


def dataset_names(cfg, split: str) -> List[str]:
    """The dataset names of ``dataloader.<split>.dataset.names`` (a str or a list), or []
    when that dataset is not a ``get_detection_dataset_dicts``-style node with names."""
    loader = cfg.dataloader.get(split) if OmegaConf.is_dict(cfg.get("dataloader")) else None
    ds = loader.get("dataset") if loader is not None and OmegaConf.is_dict(loader) else None
    if ds is None or not OmegaConf.is_dict(ds) or "names" not in ds:
        return []
    names = ds.names
    if isinstance(names, str):
        return [names]
    if OmegaConf.is_list(names) or isinstance(names, (list, tuple)):
        if not all(isinstance(n, str) for n in names):
            raise UserError(f"dataloader.{split}.dataset.names={_short(names)}: expected dataset names")
        return list(names)
    raise UserError(f"dataloader.{split}.dataset.names={_short(names)}: expected a dataset name or a list")


def _hand_over_once(name: str, dicts: List[Dict]) -> None:
    """Make the next ``DatasetCatalog.get(name)`` in this process return ``dicts`` (already
    loaded and checked), then restore the registered loader."""
    from detectron2.data import DatasetCatalog

    loader = DatasetCatalog[name]

    def once():
        DatasetCatalog.remove(name)
        DatasetCatalog.register(name, loader)
        return dicts

    DatasetCatalog.remove(name)
    DatasetCatalog.register(name, once)


def _load(name: str, key: str) -> List[Dict]:
    from detectron2.data import DatasetCatalog

    from ..data.datasets.common import require_registered

    try:
        require_registered(name)
    except UserError:
        raise
    except ValueError as e:
        raise UserError(f"{key}: {e}") from None
    try:
        dicts = DatasetCatalog.get(name)
    except UserError:
        raise
    except OSError as e:  # e.g. a registered COCO json that is absent
        raise UserError(f"dataset {name!r} ({key}) cannot be loaded: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return dicts


def _check_dicts(name: str, key: str, dicts, num_classes: Optional[Tuple[str, int]]) -> None:
    from ..data.datasets.common import is_ignore_region, verify_records

    if not isinstance(dicts, list):
        return  # an iterable or map-style torch Dataset: nothing to check cheaply
    if not dicts:
        raise UserError(f"dataset {name!r} ({key}) is empty")
    verify_records([d for d in dicts if "file_name" in d], f"dataset {name!r}", verify="none")
    if num_classes is None:
        return
    ncls_key, k = num_classes
    for d in dicts:
        for j, ann in enumerate(d.get("annotations") or ()):
            cid = ann.get("category_id")
            if is_ignore_region(ann) or (isinstance(cid, int) and not isinstance(cid, bool) and 0 <= cid < k):
                continue
            raise UserError(f"dataset {name!r}: {d.get('file_name', d.get('image_id'))}, annotation {j}: "
                            f"category_id {cid!r} is out of range for the model's {k} classes "
                            f"({ncls_key}={k}: ids 0..{k - 1}, or -1 for an ignore region)")


def _has_object(d: Dict) -> bool:
    from ..data.datasets.common import is_ignored

    return any(not is_ignored(a) for a in d.get("annotations") or ())


def check_run(cfg, eval_only: bool = False, hand_over: bool = True) -> None:
    """Refuse a run that cannot work (module docstring), before anything is written.

    Args:
        cfg: the loaded config (overrides applied, ``train.output_dir`` derived).
        eval_only: ``--eval-only`` (no training set, a checkpoint is required).
        hand_over: give the loaded dataset dicts to the next ``DatasetCatalog.get`` of
            their name in this process (a single-process run), instead of dropping them.

    Raises:
        UserError: one line naming the key, dataset, file or annotation.
    """
    missing = [k for k in ("model", "train", "dataloader") if k not in cfg]
    if missing:
        raise UserError(f"the config has no {', '.join(repr(k) for k in missing)}: not a training "
                        "config (see configs/)")
    ncls = model_num_classes(cfg)
    train = cfg.train
    if eval_only:
        ckpt = train.get("init_checkpoint")
        if not ckpt:
            raise UserError("--eval-only needs the checkpoint to evaluate: train.init_checkpoint=<file.pth>")
        if "://" not in str(ckpt) and not os.path.isfile(ckpt):
            raise UserError(f"train.init_checkpoint={ckpt}: no such file")
    else:
        it = train.get("max_iter")
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise UserError(f"train.max_iter={it!r}: training needs at least 1 iteration "
                            "(use --eval-only to evaluate a checkpoint)")
        from .hooks import check_no_aug_config

        check_no_aug_config(cfg)  # train.no_aug: a switchable dataset, a model with set_l1_loss
    if train.get("output_dir"):
        check_output_dir(train.output_dir)
    splits = ["test"] if eval_only else ["train", "test"]
    if "test" in splits and cfg.dataloader.get("evaluator") is None:
        splits.remove("test")
    checked: Dict[str, Any] = {}
    for split in splits:
        key = f"dataloader.{split}.dataset.names"
        names = dataset_names(cfg, split)
        for name in names:
            if name not in checked:
                checked[name] = _load(name, key)
                _check_dicts(name, key, checked[name], ncls)
        if split == "train" and names and all(isinstance(checked[n], list) for n in names):
            if not any(_has_object(d) for n in names for d in checked[n]):
                total = sum(len(checked[n]) for n in names)
                raise UserError(f"{key}={','.join(names)}: no image has an object annotation "
                                f"({total} images, all empty or with only crowd/ignore boxes): nothing to train on")
    if hand_over:
        for name, dicts in checked.items():
            _hand_over_once(name, dicts)

