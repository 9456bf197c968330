"""
:class:`SRTOD`: SR-TOD as the feature hook of sod2's Detectron2 detectors
(``model.feature_hook`` of :class:`~sod2.modeling.meta_arch.SOD2GeneralizedRCNN` and
:class:`~sod2.modeling.meta_arch.SOD2RetinaNet`; contract in
:mod:`sod2.modeling.meta_arch.feature_hook`).

From the backbone's features and the network-input images it reconstructs the image from one
level (:class:`ReconstructionHead`), thresholds the difference map (:class:`LearnableThreshold`)
and enhances that level with it (:class:`DGFE`); in training it returns the reconstruction
loss ``loss_rec`` and logs the threshold (``srtod/threshold``, in 1/255 units). Everything it
needs comes in as arguments and everything it gives goes out as the return value: no state is
kept between calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...meta_arch.feature_hook import FeatureHookInput, FeatureHookOutput
from ...training import put_scalars
from ....errors import UserError
from .reconstruction import DGFE, LearnableThreshold, ReconstructionHead, difference_map, nearest_resize

__all__ = ["SRTOD", "ReconstructionVisuals", "reconstruction_target"]


@dataclass
class ReconstructionVisuals:
    """One image's pictures (``return_visuals=True``), at the padded network-input size.

    Attributes:
        reconstruction: (3, Hp, Wp) the reconstructed RGB image in [0, 1].
        binary_map: (1, Hp, Wp) the thresholded difference map (0, 0.5 or 1), or None for the
            reconstruction-only ablation (``dgfe=None``).
    """
    reconstruction: Tensor
    binary_map: Optional[Tensor]


def reconstruction_target(inputs: FeatureHookInput) -> Tensor:
    """(N, 3, Hp, Wp) float: the network-input images as RGB / 255, zero-padded like the batch
    (``inputs.raw`` is already padded with zeros, which stay 0)."""
    img = inputs.raw.float() / 255.0
    return img.flip(1) if inputs.input_format == "BGR" else img


class SRTOD(nn.Module):
    """SR-TOD's reconstruction and difference-map guided enhancement of one backbone level.

    ``forward(features, inputs)`` returns the features with ``level`` enhanced (the other
    levels untouched; the head reads the un-enhanced level).

    Args:
        head: :class:`ReconstructionHead` (its ``num_up`` = log2 of the level's stride).
        threshold: :class:`LearnableThreshold` (needed with DGFE).
        dgfe: :class:`DGFE`, or None for the reconstruction-only ablation.
        level: "p2" (two-stage detectors) or "p3" (RetinaNet-style, one more Up).
        loss_weight: weight of the MSE reconstruction loss ``loss_rec``.
        difference: "pixel" or "fft" (:func:`difference_map`).
        return_visuals: at inference, return each image's :class:`ReconstructionVisuals`
            (the detector puts them under ``"visuals"``); computes the full reconstruction.
        sampled_inference: at inference, reconstruct only the pixels DGFE reads
            (:meth:`ReconstructionHead.forward_sampled`; same detections, less work).
        channels_last: run the head in NHWC memory layout (same numbers; on the CPU its
            convolutions are ~1.6x faster at 800 px).
    """

    def __init__(self, head: ReconstructionHead, threshold: Optional[LearnableThreshold] = None,
                 dgfe: Optional[DGFE] = None, level: str = "p2", loss_weight: float = 1.0,
                 difference: str = "pixel", return_visuals: bool = False, sampled_inference: bool = True,
                 channels_last: bool = True):
        super().__init__()
        if head is None or (dgfe is not None and threshold is None):
            raise UserError("SRTOD needs model.feature_hook.head (and model.feature_hook.threshold with "
                            "model.feature_hook.dgfe); to switch SR-TOD off set model.feature_hook=null")
        if difference not in ("pixel", "fft"):
            raise UserError(f"model.feature_hook.difference must be 'pixel' or 'fft', got {difference!r}")
        self.head, self.threshold, self.dgfe = head, threshold, dgfe
        self.level, self.loss_weight, self.difference = level, loss_weight, difference
        self.return_visuals = return_visuals
        self.sampled_inference = sampled_inference
        self.channels_last = channels_last
        if channels_last:
            head.to(memory_format=torch.channels_last)

    def forward(self, features: Dict[str, Tensor], inputs: FeatureHookInput) -> FeatureHookOutput:
        """
        Args:
            features: the backbone's levels, each (N, C, Hp / s_l, Wp / s_l).
            inputs: the detector's :class:`FeatureHookInput` (``raw`` gives the target).
        Returns:
            features with ``level`` enhanced; ``{"loss_rec": weight x MSE}`` in training;
            visuals per image when ``return_visuals`` (at inference).
        """
        if self.level not in features:
            raise UserError(f"model.feature_hook.level={self.level!r} is not a backbone output "
                            f"({sorted(features)})")
        x_hw = tuple(inputs.images.tensor.shape[-2:])
        target = reconstruction_target(inputs)
        p = features[self.level]
        s = self.head.stride
        p_head = p.contiguous(memory_format=torch.channels_last) if self.channels_last else p
        feats = dict(features)
        # at inference DGFE reads the difference map only at pixels (s*i, s*j) (the nearest
        # resize to the level): compute the reconstruction there only (same numbers)
        if (self.sampled_inference and not self.training and not self.return_visuals and self.dgfe is not None
                and self.difference == "pixel" and x_hw == (p.shape[-2] * s, p.shape[-1] * s)):
            rec_s = self.head.forward_sampled(p_head).contiguous()
            binary = self.threshold(difference_map(rec_s, target[..., ::s, ::s].to(rec_s.dtype)))
            feats[self.level] = self.dgfe(p, binary)
            return FeatureHookOutput(feats)
        rec = self.head(p_head).contiguous()
        losses = {}
        if self.training:
            losses["loss_rec"] = self.loss_weight * F.mse_loss(rec, target.to(rec.dtype))
        binary = None
        if self.dgfe is not None:
            binary = self.threshold(difference_map(rec, target.to(rec.dtype), self.difference))
            feats[self.level] = self.dgfe(p, nearest_resize(binary, p.shape[-2:]))
            if self.training:
                put_scalars(**{"srtod/threshold": float(self.threshold.thresh.detach()) * 255},
                            smoothing_hint=False)
        visuals: Optional[List[ReconstructionVisuals]] = None
        if self.return_visuals and not self.training:
            visuals = [ReconstructionVisuals(rec[i].detach(), None if binary is None else binary[i].detach())
                       for i in range(rec.shape[0])]
        return FeatureHookOutput(feats, losses, visuals)
