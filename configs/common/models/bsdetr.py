"""Better Sampling (Huang et al., "Better Sampling, towards Better End-to-end Small Object
Detection", 2024) on sod2's RT-DETR, as config nodes: the method enters RT-DETR by its
criterion (``BetterSamplingCriterion``, a ``SetCriterion`` subclass); inference is RT-DETR's.
Classes in ``sod2/modeling/methods/better_sampling/`` (its ``__init__`` is the method's page);
facts and [ours] readings in projects/BetterSampling/README.md.

A method config imports its plain RT-DETR twin (``configs/bsdetr/bsdetr_plain_*``) and adds::

    model.criterion._target_ = BetterSamplingCriterion
    model.criterion.better_sampling = better_sampling

``better_sampling`` holds

* ST (scale-aligned target, ``beta`` 0.73, ``theta`` 6, Tables 4-5): ``class_target``;
* SR (task-decoupled sample reweighting): ``reweighting``, a ``SampleReweighting`` as wide as
  the decoder (``hidden_dim`` follows ``model.decoder.hidden_dim``);
* SPR (sample-point refinement): ``point_refinement``, one ``eta`` per decoder layer (the
  paper's 1.5, 1.3, 1.2, 1.1, 1.05, 1.0 for 6 layers, Table 7; another decoder depth sets
  ``point_refinement.etas = list(default_etas(model.decoder.num_layers))``);
* the paper's varifocal loss ``vfl_alpha`` 0.5, ``vfl_gamma`` 1.5 (Table 6, every ablation row;
  RT-DETR's own 0.75 / 2.0 stay on the criterion and hold when Better Sampling is off).

Each part off: ``model.criterion.better_sampling.<part>=null`` (the paper's ablation rows,
Table 3); the whole method off: ``model.criterion.better_sampling=null`` (= RT-DETR).

The rest of the paper's recipe (AdamW lr 2e-4, 2000-iteration linear warm-up, EMA 0.9999,
72 epochs) belongs to the plain twins (configs/bsdetr/bsdetr_plain_*).
"""
from detectron2.config import LazyCall as L

from sod2.modeling.methods.better_sampling import (
    PAPER_VFL_ALPHA,
    PAPER_VFL_GAMMA,
    BetterSampling,
    BetterSamplingCriterion,
    SamplePointRefinement,
    SampleReweighting,
    ScaleAlignedTarget,
)

__all__ = ["better_sampling", "BetterSamplingCriterion", "default_etas", "PAPER_ETAS"]

PAPER_ETAS = (1.5, 1.3, 1.2, 1.1, 1.05, 1.0)  # Table 7 best, decoder layers 1-6


def default_etas(num_layers: int):
    """The paper's etas (Table 7, a 6-layer decoder) spread over ``num_layers`` layers: layer i
    takes the paper's value at the same relative depth, index ``floor(i * 5 / (n - 1) + 0.5)``
    (sod2's choice; the paper only has 6 layers): the first layer keeps the loosest eta
    (1.5, its reference boxes are the encoder's proposals), the last one eta 1 (the box
    itself). 3 layers: (1.5, 1.1, 1.0); 6: the paper's; 1: (1.0,)."""
    n = int(num_layers)
    if n <= 1:
        return (PAPER_ETAS[-1],) * max(n, 0)
    last = len(PAPER_ETAS) - 1
    return tuple(PAPER_ETAS[int(i * last / (n - 1) + 0.5)] for i in range(n))


# model.criterion.better_sampling (the relative interpolations count from its parts: "...." is model)
better_sampling = L(BetterSampling)(
    class_target=L(ScaleAlignedTarget)(beta=0.73, theta=6.0),
    reweighting=L(SampleReweighting)(hidden_dim="${....decoder.hidden_dim}", detach_normalize=False),
    point_refinement=L(SamplePointRefinement)(etas=list(PAPER_ETAS), num_points="${....decoder.num_points}"),
    vfl_alpha=PAPER_VFL_ALPHA,
    vfl_gamma=PAPER_VFL_GAMMA,
)
