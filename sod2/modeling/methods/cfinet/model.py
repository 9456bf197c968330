"""
:class:`CFINetRCNN`: CFINet entering its baseline (sod2's Faster R-CNN,
:class:`~sod2.modeling.meta_arch.SOD2GeneralizedRCNN`) by subclass, with ONE injected bundle
``cfinet`` (:class:`CFINetParts`: the coarse-to-fine RPN and the feature imitation).

``cfinet=None`` (the override ``model.cfinet=null``) is the baseline: the config's own RPN and
ROI heads, no parameter or buffer more (tests/methods/test_off_is_baseline_cfinet.py).
The partial ablations of the paper's Table 4 are ``model.cfinet.crpn=null`` (+FI: feature
imitation on the baseline RPN) and ``model.cfinet.imitation=null`` (+CRPN).

The parts land where the plain detector keeps its components, so the state-dict keys are
CFINet's since its first version: ``proposal_generator.*`` (CRPN or the RPN) and
``roi_heads.imitation.*``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from detectron2.modeling import META_ARCH_REGISTRY

from ...meta_arch.detectron2_checked import SOD2GeneralizedRCNN
from ....errors import UserError
from .crpn import CRPN
from .feature_imitation import FeatureImitation, FeatureImitationROIHeads

__all__ = ["CFINetParts", "CFINetRCNN"]


@dataclass
class CFINetParts:
    """CFINet's components, a plain container (not a module: its parts are registered where the
    detector keeps them, not under ``cfinet.``).

    Attributes:
        crpn: the coarse-to-fine RPN (:class:`CRPN`), replacing the detector's RPN; None keeps
            the RPN (the "+FI" ablation).
        imitation: the feature-imitation branch (:class:`FeatureImitation`) given to the
            ROI heads; None: no imitation (the "+CRPN" ablation).
        reweight_features: the official code's option of re-weighting the detection RoI
            features by ``1 + softmax_channels(Feat2Embed convs)`` (needs ``imitation``).
    """
    crpn: Optional[CRPN] = None
    imitation: Optional[FeatureImitation] = None
    reweight_features: bool = False


@META_ARCH_REGISTRY.register()
class CFINetRCNN(SOD2GeneralizedRCNN):
    """Faster R-CNN with CFINet's parts.

    Args:
        cfinet: :class:`CFINetParts`, or None for the baseline detector. With parts, the ROI
            heads must be :class:`FeatureImitationROIHeads` (``model.roi_heads._target_``) and
            the baseline's RPN is replaced by ``cfinet.crpn`` when given (the RPN built from
            the config is then dropped: it keeps no parameter).
        proposal_generator, roi_heads, kwargs: :class:`SOD2GeneralizedRCNN`'s arguments.
    """

    def __init__(self, *, cfinet: Optional[CFINetParts] = None, proposal_generator, roi_heads, **kwargs):
        if cfinet is not None:
            if not isinstance(cfinet, CFINetParts):
                raise UserError(f"model.cfinet must be CFINetParts or null, got {type(cfinet).__name__}")
            if not isinstance(roi_heads, FeatureImitationROIHeads):
                raise UserError("model.cfinet needs model.roi_heads._target_ = FeatureImitationROIHeads, got "
                                f"{type(roi_heads).__name__}")
            if roi_heads.imitation is not None:
                raise UserError("model.roi_heads.imitation is set: CFINet's imitation goes in "
                                "model.cfinet.imitation")
            if cfinet.reweight_features and cfinet.imitation is None:
                raise UserError("model.cfinet.reweight_features needs model.cfinet.imitation")
            if cfinet.crpn is not None:
                proposal_generator = cfinet.crpn
            roi_heads.imitation = cfinet.imitation
            roi_heads.reweight_features = cfinet.reweight_features
        super().__init__(proposal_generator=proposal_generator, roi_heads=roi_heads, **kwargs)
