"""
Better Sampling (Huang et al., "Better Sampling, towards Better End-to-end Small Object
Detection", 2024): three changes of the training objective of RT-DETR; inference is the
baseline's. Numbers, sources and the measured runs: projects/BetterSampling/README.md.

How it enters its baselines: one module, :class:`BetterSampling` (``better_sampling.py``),
holds the three parts and the paper's varifocal-loss parameters, and is injected whole:

* RT-DETR, by criterion injection (as detrex's criteria): :class:`BetterSamplingCriterion`
  (``criterion.py``) is RT-DETR's :class:`~sod2.modeling.criterion.SetCriterion` with its
  template methods answered by the module (class target, positive weights, extra terms, VFL
  alpha/gamma) and asks the decoder for the fields the parts read
  (``BetterSampling.required_outputs`` -> the optional fields of
  :class:`~sod2.modeling.transformer.DecoderLayerOutput`); the detector is ``RTDETR`` itself;
* YOLOX (ST and SR only), by subclass: :class:`BetterSamplingYOLOX` (``dense.py``) fills
  YOLOX's class-target and positive-weight hooks.

=============================  ==========================================  ============================================
paper part                     class (module)                              config key (configs/common/models/bsdetr.py)
=============================  ==========================================  ============================================
the whole method (DETR)        :class:`BetterSamplingCriterion`            ``model.criterion._target_``,
                               (``criterion``) + :class:`BetterSampling`   ``model.criterion.better_sampling``
                               (``better_sampling``)                       (the ``better_sampling`` node)
ST, scale-aligned target       :class:`ScaleAlignedTarget`                 ``...better_sampling.class_target``
(Tables 4-5: beta 0.73,        (``components``)
theta 6)
SR, sample reweighting         :class:`SampleReweighting`                  ``...better_sampling.reweighting``
                               (``components``)
SPR, sample-point refinement   :class:`SamplePointRefinement`              ``...better_sampling.point_refinement``
(Table 7: eta per layer)       (``components``)                            (``etas``)
the paper's VFL (Table 6)      ``BetterSampling.vfl_alpha/vfl_gamma``      ``...better_sampling.vfl_alpha``, ``vfl_gamma``
                               (0.5 / 1.5)
SR statistics                  :func:`log_reweighting_stats`               (EventStorage ``better_sampling/r_*``)
the whole method (dense)       :class:`BetterSamplingYOLOX` (``dense``)    ``model._target_``, ``model.better_sampling``
                                                                           (configs/common/models/dense_better_sampling.py)
=============================  ==========================================  ============================================

Off: ``model.criterion.better_sampling=null`` gives RT-DETR with RT-DETR's own VFL alpha 0.75 /
gamma 2.0 (no extra parameter, the same state-dict keys, losses and detections;
tests/methods/test_off_is_baseline_bs_detr.py); dense: ``model.better_sampling=null`` gives
YOLOX. One part off: ``...better_sampling.<part>=null`` (the paper's Table 3 rows; the "none"
row, all three parts off with the paper's VFL kept, is ``configs/bsdetr/bsdetr_none_*``).

State-dict keys: only SR has tensors, ``criterion.better_sampling.reweighting.*`` (DETR) and
``better_sampling.reweighting.*`` (dense). Checkpoints of the old layout
(``criterion.reweighting.*`` / ``reweighting.*``, before issue 16) load through sod2's checkpoint
loaders, or convert with ``python tools/convert_weights.py sod2-layout OLD.pth NEW.pth``.
"""
from .better_sampling import PAPER_VFL_ALPHA, PAPER_VFL_GAMMA, BetterSampling  # noqa: F401
from .components import (  # noqa: F401
    SamplePointRefinement,
    SampleReweighting,
    ScaleAlignedTarget,
    log_reweighting_stats,
)
from .criterion import BetterSamplingCriterion, SampleWeights  # noqa: F401
from .dense import BetterSamplingYOLOX, gather_locations  # noqa: F401  (registers it in META_ARCH_REGISTRY)
