"""Better Sampling's dense parts (Huang et al., "Better Sampling, towards Better End-to-end
Small Object Detection", 2024: scale-aligned target ST and task-decoupled sample reweighting
SR; the paper also reports them on the dense GFL and TOOD) on sod2's YOLOX. They change only
the training losses; inference is YOLOX's. Classes in
``sod2/modeling/criterion/better_sampling.py``, the wiring in ``YOLOX.losses``; facts and
[ours] readings in the project's README (projects/BetterSampling/README.md).

``with_dense_better_sampling(model, st=True, sr=True)`` sets on a YOLOX model config

* ST (``beta`` 0.73, ``theta`` 6): ``model.class_target``, the soft target of each positive's
  class channel (off: None = SimOTA's matched IoU, plain YOLOX);
* SR: ``model.reweighting``, a ``SampleReweighting`` as wide as the head (``hidden_dim``
  follows ``model.head.feat_channels``) on the positive locations' last cls / reg branch
  features (off: None).

Each part is off again by one override: ``model.class_target=None`` / ``model.reweighting=None``.
"""
from detectron2.config import LazyCall as L

from sod2.modeling.methods.better_sampling.components import SampleReweighting, ScaleAlignedTarget


def with_dense_better_sampling(model, st: bool = True, sr: bool = True, beta: float = 0.73, theta: float = 6.0,
                               detach_normalize: bool = False):
    """Set Better Sampling's ST and SR on a YOLOX model config (in place; returns it).

    Args:
        model: a YOLOX LazyCall (configs/common/models/yolox.py), its size already chosen
            (``yolox_size``: the generator's width follows ``model.head.feat_channels``).
        st, sr: the two switches (each False leaves YOLOX's behaviour for that part).
        beta, theta: ST's parameters (Tables 4-5 best).
        detach_normalize: SR's option (detached weights normalised to mean 1); False = the
            paper literally.
    """
    model.class_target = L(ScaleAlignedTarget)(beta=beta, theta=theta) if st else None
    model.reweighting = (L(SampleReweighting)(hidden_dim="${..head.feat_channels}",
                                              detach_normalize=detach_normalize) if sr else None)
    return model
