"""Better Sampling (Huang et al., "Better Sampling, towards Better End-to-end Small Object
Detection", 2024) on sod2's RT-DETR: three changes of the training objective, set on the
model config's criterion; inference is RT-DETR's. Classes in
``sod2/modeling/criterion/better_sampling.py``; facts and [ours] readings in the project's
README (projects/BetterSampling/README.md).

``with_better_sampling(model, st=True, sr=True, spr=True)`` sets

* ST (scale-aligned target, ``beta`` 0.73, ``theta`` 6): ``criterion.class_target``
  (off: None = RT-DETR's IoU target);
* SR (task-decoupled sample reweighting): ``criterion.reweighting``, a
  ``SampleReweighting`` as wide as the decoder (``hidden_dim`` follows
  ``model.decoder.hidden_dim``);
* SPR (sample-point refinement): ``criterion.point_refinement``, one ``eta`` per decoder
  layer (the paper's 1.5, 1.3, 1.2, 1.1, 1.05, 1.0 for 6 layers; for another decoder depth
  :func:`default_etas` spreads them over its layers);
* the paper's varifocal loss: ``alpha`` 0.5, ``gamma`` 1.5 (Table 6; RT-DETR: 0.75 / 2.0),
  with every switch, so that ``with_better_sampling(model, False, False, False)`` is the
  paper's baseline and the ablation rows (none, SR, SPR, ST+SR, ST+SR+SPR; Table 3) differ
  only in the three switches.

The rest of the paper's recipe (AdamW lr 2e-4, 2000-iteration linear warm-up, EMA 0.9999,
72 epochs) is ``rtdetr_recipe(..., lr=2e-4, warmup_iters=2000)`` (configs/bsdetr/).
"""
from detectron2.config import LazyCall as L

from sod2.modeling.methods.better_sampling.components import SamplePointRefinement, SampleReweighting, ScaleAlignedTarget

PAPER_ETAS = (1.5, 1.3, 1.2, 1.1, 1.05, 1.0)  # Table 7 best, decoder layers 1-6
PAPER_VFL_ALPHA, PAPER_VFL_GAMMA = 0.5, 1.5  # Table 6


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


def with_better_sampling(model, st: bool = True, sr: bool = True, spr: bool = True, *, beta: float = 0.73,
                         theta: float = 6.0, etas=None, detach_normalize: bool = False,
                         vfl_alpha: float = PAPER_VFL_ALPHA, vfl_gamma: float = PAPER_VFL_GAMMA):
    """Set Better Sampling's parts on an RT-DETR model config (in place; returns it).

    Args:
        model: an RT-DETR LazyCall (configs/common/models/rtdetr.py), its decoder depth
            already chosen (``rtdetr_depth``).
        st, sr, spr: the three switches (each False leaves RT-DETR's behaviour for that part).
        beta, theta: ST's parameters (Tables 4-5 best).
        etas: SPR's eta per decoder layer; None: :func:`default_etas` of the decoder depth.
        detach_normalize: SR's option (detached weights normalised to mean 1); False = the
            paper literally.
        vfl_alpha, vfl_gamma: the varifocal loss's (the paper's 0.5 / 1.5), set whatever the
            switches.
    """
    criterion = model.criterion
    criterion.alpha = float(vfl_alpha)
    criterion.gamma = float(vfl_gamma)
    criterion.class_target = L(ScaleAlignedTarget)(beta=beta, theta=theta) if st else None
    criterion.reweighting = (L(SampleReweighting)(hidden_dim="${...decoder.hidden_dim}",
                                                  detach_normalize=detach_normalize) if sr else None)
    if spr:
        etas = default_etas(int(model.decoder.num_layers)) if etas is None else tuple(float(e) for e in etas)
        criterion.point_refinement = L(SamplePointRefinement)(etas=list(etas), num_points="${...decoder.num_points}")
    else:
        criterion.point_refinement = None
    return model
