"""
CFINet (Yuan et al., "Small Object Detection via Coarse-to-fine Proposal Generation and
Imitation Learning", ICCV 2023): a coarse-to-fine RPN and feature imitation on Faster R-CNN.
Numbers, sources and the measured runs: projects/CFINet/README.md.

How it enters its baseline: by subclass, :class:`CFINetRCNN` (``model.py``) of sod2's Faster
R-CNN (:class:`~sod2.modeling.meta_arch.SOD2GeneralizedRCNN`), with ONE injected bundle
``model.cfinet`` (:class:`CFINetParts`). The parts land in the detector's own slots: CRPN
replaces the proposal generator, the imitation branch goes into the ROI heads
(:class:`FeatureImitationROIHeads`, ``model.roi_heads._target_``), so the state-dict keys
are ``proposal_generator.*`` and ``roi_heads.imitation.*``.

=====================================  ====================================  =====================================
paper part                             class / function (module)             config key (``configs/common/models/cfinet.py``)
=====================================  ====================================  =====================================
the whole method                       :class:`CFINetRCNN`,                  ``model.cfinet`` (``cfinet``)
                                       :class:`CFINetParts` (``model``)
coarse-to-fine RPN (Sec. 3.2)          :class:`CRPN`, :class:`CRPNHead`      ``model.cfinet.crpn``
                                       (``crpn``)
adaptive convolution (stage 2)         :class:`AdaptiveConv`                 ``model.cfinet.crpn.head.adaptive``
                                       (``adaptive_conv``)
dynamic IoU assignment (Eq. 1)         :class:`DynamicIoUAssigner`           ``model.cfinet.crpn.stage1_assigner``
                                       (``dynamic_iou``)
feature imitation (Sec. 3.3):          :class:`FeatureImitation`,            ``model.cfinet.imitation``
exemplar bank, Feat2Embed, L_con       :class:`ExemplarBank`,
                                       :class:`Feat2Embed`
                                       (``feature_imitation``)
imitation in the ROI heads             :class:`FeatureImitationROIHeads`     ``model.roi_heads._target_``
Feat2Embed's MLP at 0.05x lr [code]    :func:`imitation_mlp_lr_factor`       ``optimizer.params.lr_factor_func``
=====================================  ====================================  =====================================

Off: ``model.cfinet=null`` gives the plain twin's Faster R-CNN (no parameter or buffer more, the
same state-dict keys, the same losses and detections;
tests/methods/test_off_is_baseline_cfinet.py). Table 4's partial rows:
``model.cfinet.imitation=null`` (+CRPN) and ``model.cfinet.crpn=null`` (+FI).
"""
from .adaptive_conv import AdaptiveConv, adaptive_conv_offsets  # noqa: F401
from .crpn import CRPN, CRPNHead  # noqa: F401  (registers CRPN in PROPOSAL_GENERATOR_REGISTRY)
from .dynamic_iou import DynamicIoUAssigner, dynamic_iou_threshold  # noqa: F401
from .feature_imitation import (ExemplarBank, Feat2Embed, FeatureImitation,  # noqa: F401
                                FeatureImitationROIHeads, imitation_mlp_lr_factor)
from .model import CFINetParts, CFINetRCNN  # noqa: F401
