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

from .sliced import SlicedInference

__all__ = ["with_slicing", "apply_slicing_block", "SLICING_KEYS"]

SLICING_KEYS = ("size", "overlap", "stride", "batch_size", "full_image", "merge", "metric", "threshold",
                "class_agnostic", "max_detections", "pad_value")


def with_slicing(model, size=800, overlap=0.2, stride=None, batch_size=None, full_image=False,
                 merge="nms", metric="iou", threshold=0.5, class_agnostic=False,
                 max_detections=None, pad_value=None, dataloader=None):
    """``L(SlicedInference)(model=model, ...)``.

    Args:
        model: a LazyCall model config.
        size, overlap, stride, batch_size, full_image, pad_value: the slicing
            (:class:`SlicedInference`'s ``slice_size``, ``overlap``, ...).
        merge, metric, threshold, class_agnostic, max_detections: the merging
            (``merge``, ``match_metric``, ``match_threshold``, ...).
        dataloader: the config's ``dataloader``: its test mapper's augmentations (the
            test-time resizing) move to each slice and to the full image, and the test
            mapper is left without them, so that slices are cut at the image's own
            resolution. None: slices are cut from the image as the test mapper delivers it.
    """
    augs = []
    if dataloader is not None and "test" in dataloader:
        mapper = dataloader.test.mapper
        augs = [copy.deepcopy(a) for a in (mapper.get("augmentations", None) or [])]
        mapper.augmentations = []
    return L(SlicedInference)(
        model=model, slice_size=size, overlap=overlap, stride=stride, batch_size=batch_size,
        full_image=full_image, slice_augmentations=augs, merge=merge, match_metric=metric,
        match_threshold=threshold, class_agnostic=class_agnostic, max_detections=max_detections,
        pad_value=pad_value, enabled=True)


def apply_slicing_block(cfg):
    """If ``cfg`` has a top-level ``slicing`` block (keys of :data:`SLICING_KEYS`), wrap
    ``cfg.model`` with :func:`with_slicing` (moving the test resizing to the slices) and
    remove the block. Returns ``cfg``; one ValueError line for an unknown key."""
    block = cfg.get("slicing") if hasattr(cfg, "get") else None
    if block is None:
        return cfg
    kwargs = dict(block)
    unknown = sorted(set(kwargs) - set(SLICING_KEYS))
    if unknown:
        raise ValueError(f"slicing: unknown key(s) {', '.join(unknown)}; known: {', '.join(SLICING_KEYS)}")
    del cfg["slicing"]
    if isinstance(cfg.model.get("_target_"), type) and issubclass(cfg.model._target_, SlicedInference):
        raise ValueError("slicing: the config's model is already sliced; override model.<key> instead")
    cfg.model = with_slicing(cfg.model, dataloader=cfg.get("dataloader"), **kwargs)
    return cfg
