"""The four methods of sod2, one package each, on top of the baselines of ``sod2.modeling``.
Each package's ``__init__`` is the method's page: the paper's parts -> module -> class -> the
config key, and the ONE override that switches the method off (the model is then its
baseline: same class or a subclass without extra parameters, same state-dict keys, same
outputs; ``tests/methods/test_off_is_baseline_*.py``).

==================  =============================  ===========================================  ==============================
method              package                        how it enters its baseline                   off
==================  =============================  ===========================================  ==============================
CFINet              :mod:`.cfinet`                 subclass ``CFINetRCNN`` of                   ``model.cfinet=null``
                                                   ``SOD2GeneralizedRCNN``, one injected
                                                   bundle ``CFINetParts`` (CRPN, imitation)
SR-TOD              :mod:`.srtod`                  injected ``SRTOD`` in the typed feature-hook ``model.feature_hook=null``
                                                   slot of ``SOD2GeneralizedRCNN`` /
                                                   ``SOD2RetinaNet``
Foreground Probing  :mod:`.fgprobe`                subclass ``FGProbeYOLOX`` of ``YOLOX``        ``model.probe=null``
                                                   filling two typed hooks
                                                   (``extra_losses``, ``inference_objectness``)
Better Sampling     :mod:`.better_sampling`        RT-DETR: criterion injection                 ``model.criterion.better_sampling=null``
                                                   (``BetterSamplingCriterion``); YOLOX:         (YOLOX: ``model.better_sampling=null``)
                                                   subclass ``BetterSamplingYOLOX``
==================  =============================  ===========================================  ==============================

Rule (tests/test_architecture.py): a method imports the baselines and ``sod2.layers``, never
another method; no baseline imports a method. ``sod2/__init__.py`` imports this package, which
registers the methods' classes in Detectron2's registries.
"""
from . import better_sampling, cfinet, fgprobe, srtod  # noqa: F401
