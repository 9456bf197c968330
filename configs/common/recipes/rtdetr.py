"""RT-DETR's training recipe (lyuwenyu/RT-DETR ``rtdetr_pytorch``, v1; spec B.7) as plain config
nodes, which a config assigns and then overrides like any other value; :func:`use_rtdetr_recipe`
does the wiring every RT-DETR config needs (in place)::

    from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
    from ..common.recipes.rtdetr import constant_lr as lr_multiplier

    use_rtdetr_recipe(dataloader, train)
    optimizer.lr = 2e-4                                   # an ordinary override

which is::

    train_mapper.ignore_fill = dataloader.train.mapper.ignore_fill  # the data config's
    dataloader.train.mapper = train_mapper
    dataloader.test.mapper.augmentations = [test_resize]
    dataloader.test.mapper.image_format = "RGB"
    train.ema = ema
    train.multiscale = multiscale

The nodes:

* ``train_mapper``: :class:`sod2.data.DETRDatasetMapper` with the reference's augmentations in
  its order: photometric distortion (p 0.5), zoom-out (fill 0, side 1-4, p 0.5), IoU crop
  (p 0.8), sanitize (min 1 px), horizontal flip, resize to the input size (aspect not kept, PIL
  bilinear), sanitize (the mapper's ``min_size`` 1 px); RGB (the model's ``input_format``);
  ignore regions follow the geometry and stay ignored (``ignore_fill``: the data config's,
  set by :func:`use_rtdetr_recipe`);
* ``test_resize``: the test resize to the input size (aspect not kept); the detections are
  mapped back to the original image by the model (x and y scaled separately);
* both resizes read ``train.multiscale.input_size`` (one value for training, test and the
  multi-scale hook);
* ``optimizer``: AdamW (lr 1e-4, betas 0.9/0.999, weight decay 1e-4) with gradient clipping
  (total norm 0.1, :class:`sod2.solver.ClippedAdamW`), the backbone at
  ``params.lr_factor_func.factors["backbone."]`` (0.1) x the learning rate, no weight decay
  on normalisation layers and biases (``in_proj_bias`` of attention layers included). The
  reference decides by names (``norm`` / ``bias`` substrings), so its BN in
  ``input_proj.*.1`` and LayerNorm in ``enc_output.1`` do get decay there; here every
  normalisation layer goes without (sod2's choice, as the reference's R18/R34 backbone-norm
  groups);
* ``ema``: EMA of the weights (decay 0.9999, ramp 2000; evaluation and checkpoints use it),
  for ``train.ema``;
* ``multiscale``: every iteration a size from RT-DETR's list (480-800, 640 three times), the
  batch resized with nearest-neighbour interpolation, as the reference's model forward does
  (``sod2.engine.multiscale.MultiScaleHook``), for ``train.multiscale``; another input size
  needs its own ``sizes`` (multiples of 32) and ``size_range`` (their min and max);
  ``enabled=False`` switches it off;
* ``constant_lr``: the reference's constant learning rate (its MultiStepLR never steps);
  :func:`linear_warmup` (a function: the warm-up is a fraction of ``train.max_iter``) adds
  the linear warm-up of Paddle / v2 and of the Better Sampling paper (2000 iterations from
  0.001).

The reference's batch is 16 (4 GPUs x 4).
"""
import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params
from fvcore.common.param_scheduler import LinearParamScheduler

from sod2.data import DETRDatasetMapper, RandomIoUCrop, RandomPhotometricDistort, RandomZoomOut, SanitizeBoxes
from sod2.solver import LRFactorByPrefix, clipped_optimizer_class

# the reference's multi_scale list (configs/rtdetr/include/rtdetr_r50vd.yml), for 640 px
RTDETR_MULTI_SCALE = (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)

# one input size for the training and test resizes (and the multi-scale hook's base size)
_INPUT_SIZE = "${train.multiscale.input_size}"

train_mapper = L(DETRDatasetMapper)(
    is_train=True,
    augmentations=[
        L(RandomPhotometricDistort)(p=0.5, image_format="RGB"),
        L(RandomZoomOut)(fill=0, side_range=(1.0, 4.0), p=0.5),
        L(RandomIoUCrop)(p=0.8),
        L(SanitizeBoxes)(min_size=1.0),
        L(T.RandomFlip)(horizontal=True),
        L(T.Resize)(shape=_INPUT_SIZE),
    ],
    image_format="RGB",
    ignore_fill=None,
    min_size=1.0,
)

test_resize = L(T.Resize)(shape=_INPUT_SIZE)

optimizer = L(clipped_optimizer_class(torch.optim.AdamW))(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        # biases through overrides (not weight_decay_bias, which Detectron2 writes into this dict)
        overrides={"bias": {"weight_decay": 0.0}, "in_proj_bias": {"weight_decay": 0.0}},
        lr_factor_func=L(LRFactorByPrefix)(factors={"backbone.": 0.1}),
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
    clip_max_norm=0.1,
    clip_norm_type=2.0,
)

ema = dict(enabled=True, decay=0.9999, ramp=2000.0)

multiscale = dict(enabled=True, input_size=[640, 640], size_range=[min(RTDETR_MULTI_SCALE), max(RTDETR_MULTI_SCALE)],
                  period=1, sizes=list(RTDETR_MULTI_SCALE), mode="nearest")

# a flat LinearParamScheduler: fvcore's ConstantParamScheduler refuses where = 1.0, which
# Detectron2's LRScheduler hook asks for after the last iteration
constant_lr = L(LinearParamScheduler)(start_value=1.0, end_value=1.0)


def linear_warmup(total_iters: int, warmup_iters: int, warmup_factor: float = 0.001):
    """``constant_lr`` after a linear warm-up ``f(i) = warmup_factor + (1 - warmup_factor) * i /
    warmup_iters`` for ``i < warmup_iters``: the ``lr_multiplier`` node (``total_iters`` =
    ``train.max_iter``)."""
    if not 0 < warmup_iters < total_iters:
        raise ValueError(f"linear_warmup: warm-up ({warmup_iters}) must be positive and shorter than training "
                         f"({total_iters})")
    return L(WarmupParamScheduler)(scheduler=constant_lr, warmup_factor=warmup_factor,
                                   warmup_length=warmup_iters / total_iters, warmup_method="linear")


def use_rtdetr_recipe(dataloader, train):
    """Put RT-DETR's data recipe around a data config's loader and the ``train`` node (in place,
    as in the module docstring): the reference's training mapper (with the data config's
    ignore-region painting), its test resize, RGB input, EMA and multi-scale batches. The
    optimizer and the schedule are the config's own top-level nodes (``optimizer``,
    ``lr_multiplier``)."""
    train_mapper.ignore_fill = dataloader.train.mapper.ignore_fill
    dataloader.train.mapper = train_mapper
    dataloader.test.mapper.augmentations = [test_resize]
    dataloader.test.mapper.image_format = "RGB"
    train.ema = ema
    train.multiscale = multiscale
