"""
The feature-hook slot of sod2's Detectron2 detectors (:class:`SOD2GeneralizedRCNN`,
:class:`SOD2RetinaNet`): an optional component that runs right after the backbone, may
replace its features, add training losses and return per-image pictures.

The contract is typed and explicit; the detector calls, in training and at inference::

    out = feature_hook(features, FeatureHookInput(images, raw, input_format))
    features = out.features         # what the heads read
    losses.update(out.losses)       # training only (after the detector's own losses)
    results[i]["visuals"] = out.visuals[i]   # inference, only when out.visuals is not None

With ``feature_hook=None`` (the default) the detector is exactly Detectron2's
(tests/modeling/test_feature_hook.py). A method that needs the network-input image (SR-TOD's
reconstruction target, :mod:`sod2.modeling.methods.srtod`) reads it from
:attr:`FeatureHookInput.raw`, never from state kept on a module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Protocol, runtime_checkable

from detectron2.structures import ImageList
from torch import Tensor

__all__ = ["FeatureHookInput", "FeatureHookOutput", "FeatureHook"]


@dataclass
class FeatureHookInput:
    """What the detector hands its feature hook besides the features.

    Attributes:
        images: the backbone's input: normalised ``(x - pixel_mean) / pixel_std``, batched and
            padded (``images.tensor`` (N, 3, Hp, Wp); ``images.image_sizes`` the (h, w) of each
            image before padding).
        raw: (N, 3, Hp, Wp) the same images before normalisation, as the model received them
            (0-255, any dtype, the model's channel order ``input_format``), zero-padded exactly
            like ``images`` (same size divisibility and padding constraints).
        input_format: "BGR" or "RGB", the channel order of ``raw``.
    """
    images: ImageList
    raw: Tensor
    input_format: str


@dataclass
class FeatureHookOutput:
    """What a feature hook gives back.

    Attributes:
        features: the features the heads read (level name -> (N, C, H_l, W_l)); at least the
            levels the hook was given.
        losses: training losses (name -> 0-dim tensor), added after the detector's own;
            empty at inference.
        visuals: None, or one object per image (e.g. SR-TOD's reconstruction and binary map)
            that the detector returns under ``"visuals"`` next to ``"instances"`` at inference.
    """
    features: Dict[str, Tensor]
    losses: Dict[str, Tensor] = field(default_factory=dict)
    visuals: Optional[List[Any]] = None


@runtime_checkable
class FeatureHook(Protocol):
    """A module called as ``hook(features, FeatureHookInput) -> FeatureHookOutput``."""

    def __call__(self, features: Dict[str, Tensor], inputs: FeatureHookInput) -> FeatureHookOutput:
        ...
