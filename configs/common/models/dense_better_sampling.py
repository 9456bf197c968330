"""Better Sampling's dense parts (Huang et al., "Better Sampling, towards Better End-to-end
Small Object Detection", 2024: scale-aligned target ST and task-decoupled sample reweighting
SR; the paper also reports them on the dense GFL and TOOD) on sod2's YOLOX. They change only
the training losses; inference is YOLOX's. Classes in
``sod2/modeling/methods/better_sampling/`` (``dense.py``: ``BetterSamplingYOLOX``); facts and
[ours] readings in projects/BetterSampling/README.md.

A config sets, on a YOLOX model config (its size already chosen)::

    model._target_ = BetterSamplingYOLOX
    model.better_sampling = dense_better_sampling  # imported `as _better_sampling` in a config

* ST (``beta`` 0.73, ``theta`` 6, Tables 4-5 best): ``model.better_sampling.class_target``, the
  soft target of each positive's class channel (None: SimOTA's matched IoU);
* SR: ``model.better_sampling.reweighting``, a ``SampleReweighting`` as wide as the head
  (``hidden_dim`` follows ``model.head.feat_channels``) on the positive locations' last cls /
  reg branch features (None: no weights; ``detach_normalize`` False = the paper literally).

Off (= YOLOX): ``model.better_sampling=null``; one part off: ``model.better_sampling.class_target=null``
or ``model.better_sampling.reweighting=null``. SPR needs a DETR decoder (refused on YOLOX).
"""
from detectron2.config import LazyCall as L

from sod2.modeling.methods.better_sampling import BetterSampling, SampleReweighting, ScaleAlignedTarget

dense_better_sampling = L(BetterSampling)(
    class_target=L(ScaleAlignedTarget)(beta=0.73, theta=6.0),
    reweighting=L(SampleReweighting)(hidden_dim="${...head.feat_channels}", detach_normalize=False),
)
