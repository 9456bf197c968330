"""Sliced inference at config level (LazyConfig).

* ``with_slicing(model, size=..., overlap=..., dataloader=dataloader)`` returns
  ``L(SlicedInference)(model=model, ...)`` (``configs/common/slicing.py`` re-exports it);
* ``apply_slicing_block(cfg)`` turns a top-level ``slicing`` block of a loaded config (for
  example added by the overrides ``+slicing.size=800 +slicing.overlap=0.2``) into the same
  wrapping, so that a tool that calls it after applying overrides slices any config.
"""
from __future__ import annotations

import copy

from detectron2.config import LazyCall as L

from ..errors import UserError
from .guided import GuidedSlicing
from .sliced import SlicedInference, check_slicing_args

__all__ = ["with_slicing", "apply_slicing_block", "SLICING_KEYS"]

SLICING_KEYS = ("size", "overlap", "stride", "batch_size", "full_image", "merge", "metric", "threshold",
                "class_agnostic", "max_detections", "pad_value", "guided")
# with_slicing's / the slicing block's names -> SlicedInference's argument names
_ARGUMENT = {"size": "slice_size", "metric": "match_metric", "threshold": "match_threshold"}
_KEY = {arg: key for key, arg in _ARGUMENT.items()}
_SETTINGS = ("slice_size", "overlap", "stride", "batch_size", "full_image", "merge", "match_metric",
             "match_threshold", "class_agnostic", "max_detections", "pad_value", "enabled")


def _plain(value):
    """A config value as plain Python (OmegaConf lists -> lists) for checking."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _check(prefix: str, values: dict, keys: dict, suffix: str = "") -> None:
    """:func:`check_slicing_args` on ``values`` (SlicedInference's argument names), naming a
    bad one ``<prefix><key>=<value><suffix>`` with ``keys`` mapping argument names to the
    config's names."""
    check_slicing_args(lambda arg, value: f"{prefix}{keys.get(arg, arg)}={value!r}{suffix}",
                       **{k: _plain(v) for k, v in values.items()})


def with_slicing(model, size=800, overlap=0.2, stride=None, batch_size=None, full_image=False,
                 merge="nms", metric="iou", threshold=0.5, class_agnostic=False,
                 max_detections=None, pad_value=None, guided=None, dataloader=None):
    """``L(SlicedInference)(model=model, ...)``.

    Args:
        model: a LazyCall model config.
        size, overlap, stride, batch_size, full_image, pad_value: the slicing
            (:class:`SlicedInference`'s ``slice_size``, ``overlap``, ...).
        merge, metric, threshold, class_agnostic, max_detections: the merging
            (``merge``, ``match_metric``, ``match_threshold``, ...).
        guided: None (exhaustive slicing), or a dict of
            :class:`~sod2.inference.guided.GuidedSlicing`'s arguments (``threshold``,
            ``margin``, ``source``, ``cell``, ``size``): guided slicing, the model's ``guided`` node
            (override ``model.guided.threshold=0.05``; ``model.guided=null`` is exhaustive again).
        dataloader: the config's ``dataloader``: its test mapper's augmentations (the
            test-time resizing) move to each slice and to the full image, and the test
            mapper is left without them, so that slices are cut at the image's own
            resolution. None: slices are cut from the image as the test mapper delivers it.
    Raises:
        UserError: a bad setting, one line naming it (``with_slicing(size=0)``) and the
            values it may take, when the config is built rather than when the model is.
    """
    _check("with_slicing(", dict(slice_size=size, overlap=overlap, stride=stride, batch_size=batch_size,
                                 full_image=full_image, merge=merge, match_metric=metric,
                                 match_threshold=threshold, class_agnostic=class_agnostic,
                                 max_detections=max_detections, pad_value=pad_value), _KEY, ")")
    guided_node = None
    if guided is not None:
        _check_guided("with_slicing(guided=", guided, ")")
        guided_node = L(GuidedSlicing)(**dict(guided))
    augs = []
    if dataloader is not None and "test" in dataloader:
        mapper = dataloader.test.mapper
        augs = [copy.deepcopy(a) for a in (mapper.get("augmentations", None) or [])]
        mapper.augmentations = []
    return L(SlicedInference)(
        model=model, slice_size=size, overlap=overlap, stride=stride, batch_size=batch_size,
        full_image=full_image, slice_augmentations=augs, merge=merge, match_metric=metric,
        match_threshold=threshold, class_agnostic=class_agnostic, max_detections=max_detections,
        pad_value=pad_value, enabled=True, guided=guided_node)


def _check_guided(prefix: str, value, suffix: str = "") -> None:
    """One UserError line for a guided block that GuidedSlicing refuses (or that is no mapping)."""
    from collections.abc import Mapping

    value = _plain(value)
    if not isinstance(value, Mapping):
        raise UserError(f"{prefix}{value!r}{suffix}: a mapping of GuidedSlicing's arguments "
                        "(threshold, margin, source, cell, size), or null")
    try:
        GuidedSlicing(**value)
    except TypeError as e:
        raise UserError(f"{prefix}{value!r}{suffix}: {e}") from None
    except UserError as e:
        raise UserError(f"{prefix}...{suffix}: {e}") from None


def _sliced_model(cfg) -> bool:
    model = cfg.get("model") if hasattr(cfg, "get") else None
    target = model.get("_target_") if hasattr(model, "get") else None
    return isinstance(target, type) and issubclass(target, SlicedInference)


def apply_slicing_block(cfg):
    """If ``cfg`` has a top-level ``slicing`` block (keys of :data:`SLICING_KEYS`), wrap
    ``cfg.model`` with :func:`with_slicing` (moving the test resizing to the slices) and
    remove the block. If ``cfg.model`` is already a :class:`SlicedInference`, check its
    settings (after the overrides). Returns ``cfg``.

    Raises:
        UserError: one line for an unknown key, or a bad value naming its key as the user
            wrote it (``slicing.size=0``, ``model.merge='soft'``,
            ``model.match_threshold=nan``) and the values it may take; before any model
            is built.
    """
    block = cfg.get("slicing") if hasattr(cfg, "get") else None
    if block is None:
        if _sliced_model(cfg):
            settings = {k: v for k, v in cfg.model.items() if k in _SETTINGS}
            _check("model.", settings, {})
            guided = cfg.model.get("guided", None)
            if guided is not None:
                _check_guided("model.guided=", {k: v for k, v in _plain(guided).items() if k != "_target_"})
        return cfg
    kwargs = dict(block)
    unknown = sorted(set(kwargs) - set(SLICING_KEYS))
    if unknown:
        raise UserError(f"slicing: unknown key(s) {', '.join(unknown)}; known: {', '.join(SLICING_KEYS)}")
    if _sliced_model(cfg):
        raise UserError("slicing: the config's model is already sliced; override model.<key> instead")
    _check("slicing.", {_ARGUMENT.get(k, k): v for k, v in kwargs.items() if k != "guided"}, _KEY)
    if kwargs.get("guided") is not None:
        _check_guided("slicing.guided=", kwargs["guided"])
    del cfg["slicing"]
    cfg.model = with_slicing(cfg.model, dataloader=cfg.get("dataloader"), **{k: _plain(v) for k, v in kwargs.items()})
    return cfg
