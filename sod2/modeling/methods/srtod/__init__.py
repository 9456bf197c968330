"""
SR-TOD (Cao et al., "Visible and Clear: Finding Tiny Objects in Difference Map", ECCV 2024):
self-reconstruction of the input image and difference-map guided feature enhancement.
Numbers, sources and the measured runs: projects/SR-TOD/README.md.

How it enters its baseline: as an injected component in the typed feature-hook slot of sod2's
Detectron2 detectors (``model.feature_hook`` of
:class:`~sod2.modeling.meta_arch.SOD2GeneralizedRCNN`: Faster/Cascade R-CNN and CFINet, and of
:class:`~sod2.modeling.meta_arch.SOD2RetinaNet`; contract in
:mod:`sod2.modeling.meta_arch.feature_hook`). The detector stays the plain class; the hook runs
right after the backbone and gets the network-input images from the detector, not through
state kept on a module.

===============================  =====================================  ==========================================
paper part                       class / function (module)              config key (``configs/common/models/srtod.py``)
===============================  =====================================  ==========================================
the whole method                 :class:`SRTOD` (``hook``)              ``model.feature_hook`` (``hook``; ``hook_p3``
                                                                        for RetinaNet)
reconstruction head (Sec. 3.2)   :class:`ReconstructionHead`            ``model.feature_hook.head``
                                 (``reconstruction``)                   (``reduce_to``: sod2's LIGHT variant)
reconstruction loss              ``SRTOD.forward`` (``loss_rec``)       ``model.feature_hook.loss_weight``
difference map                   :func:`difference_map`                 ``model.feature_hook.difference``
learnable threshold (Sec. 3.3)   :class:`LearnableThreshold`            ``model.feature_hook.threshold``
DGFE (Sec. 3.4)                  :class:`DGFE`                          ``model.feature_hook.dgfe`` (None: the
                                                                        reconstruction-only ablation)
===============================  =====================================  ==========================================

Off: ``model.feature_hook=null`` gives the baseline detector itself (same class, same
state-dict keys, same losses and detections; tests/methods/test_off_is_baseline_srtod.py).

State-dict keys: the backbone's are the baseline's (``backbone.*``), the hook's are
``feature_hook.head.*``, ``feature_hook.threshold.thresh`` and ``feature_hook.dgfe.*``.
Checkpoints of the old layout (``backbone.fpn.*``, ``backbone.{head,threshold,dgfe}.*``, before
issue 16) load through sod2's checkpoint loaders, or convert with
``python tools/convert_weights.py sod2-layout OLD.pth NEW.pth``.
"""
from .reconstruction import (DGFE, LearnableThreshold, ReconstructionHead,  # noqa: F401
                             difference_map, nearest_resize)
from .hook import SRTOD, ReconstructionVisuals, reconstruction_target  # noqa: F401
