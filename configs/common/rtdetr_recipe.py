"""RT-DETR's training recipe (lyuwenyu/RT-DETR ``rtdetr_pytorch``, v1; spec B.7) on any sod2
dataset config, in one call.

``lr_multiplier = rtdetr_recipe(dataloader, train, optimizer, epochs=72, iters_per_epoch=N)``
edits the configs in place:

* training data: :class:`sod2.data.DETRDatasetMapper` (the dataset names, batch size and
  ``ignore_fill`` kept) with the reference's augmentations in its order: photometric
  distortion (p 0.5), zoom-out (fill 0, side 1-4, p 0.5), IoU crop (p 0.8), sanitize
  (min 1 px), horizontal flip, resize to ``input_size`` x ``input_size`` (aspect not kept, PIL
  bilinear), sanitize (min 1 px); ignore regions follow the geometry and stay ignored;
* test data: resize to ``input_size`` x ``input_size`` (aspect not kept); the detections are
  mapped back to the original image by the model (x and y scaled separately);
* both mappers read RGB (the model's ``input_format``);
* optimizer: AdamW (lr 1e-4, betas 0.9/0.999, weight decay 1e-4) with gradient clipping
  (total norm 0.1, :class:`sod2.solver.ClippedAdamW`), the backbone at ``backbone_lr_factor``
  x the learning rate (1e-5), no weight decay on normalisation layers and biases
  (``in_proj_bias`` of attention layers included). The reference decides by names (``norm``
  / ``bias`` substrings), so its BN in ``input_proj.*.1`` and LayerNorm in ``enc_output.1``
  do get decay there; here every normalisation layer goes without (sod2's choice, as the
  reference's R18/R34 backbone-norm groups);
* EMA of the weights (decay 0.9999, ramp 2000, evaluation and checkpoints use it);
* multi-scale training: every iteration a size from RT-DETR's list (480-800, 640 three
  times), the batch resized with nearest-neighbour interpolation, as the reference's model
  forward does (``sod2.engine.multiscale.MultiScaleHook`` with ``sizes``/``mode``);
* learning rate: constant (the reference's MultiStepLR never steps), with an optional linear
  warm-up of ``warmup_iters`` from ``warmup_factor`` (none in v1; 2000 from 0.001 in Paddle /
  v2 and in the Better Sampling paper). Returned as the ``lr_multiplier`` config.

Set ``train.max_iter = epochs * iters_per_epoch`` in the calling config (the warm-up is
expressed as a fraction of it). The reference's batch is 16 (4 GPUs x 4).
"""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler
from fvcore.common.param_scheduler import LinearParamScheduler

from sod2.data import DETRDatasetMapper, RandomIoUCrop, RandomPhotometricDistort, RandomZoomOut, SanitizeBoxes
from sod2.solver import LRFactorByPrefix, with_grad_clip

# the reference's multi_scale list (configs/rtdetr/include/rtdetr_r50vd.yml), for 640 px
RTDETR_MULTI_SCALE = (480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800)


def rtdetr_train_augmentations(input_size: int = 640, image_format: str = "RGB", photometric_p: float = 0.5,
                               zoom_out_p: float = 0.5, zoom_out_side=(1.0, 4.0), zoom_out_fill=0,
                               iou_crop_p: float = 0.8, min_size: float = 1.0):
    """The reference's training augmentations as LazyCalls, in its order (the last sanitize
    is the mapper's ``min_size``)."""
    return [
        L(RandomPhotometricDistort)(p=photometric_p, image_format=image_format),
        L(RandomZoomOut)(fill=zoom_out_fill, side_range=tuple(zoom_out_side), p=zoom_out_p),
        L(RandomIoUCrop)(p=iou_crop_p),
        L(SanitizeBoxes)(min_size=min_size),
        L(T.RandomFlip)(horizontal=True),
        L(T.Resize)(shape=(input_size, input_size)),
    ]


def constant_lr_schedule(total_iters: int, warmup_iters: int = 0, warmup_factor: float = 0.001):
    """Constant multiplier 1, after a linear warm-up ``f(i) = warmup_factor + (1 -
    warmup_factor) * i / warmup_iters`` for ``i < warmup_iters`` (none when 0)."""
    # a flat LinearParamScheduler: fvcore's ConstantParamScheduler refuses where = 1.0, which
    # Detectron2's LRScheduler hook asks for after the last iteration
    constant = L(LinearParamScheduler)(start_value=1.0, end_value=1.0)
    if warmup_iters <= 0:
        return constant
    if warmup_iters >= total_iters:
        raise ValueError(f"constant_lr_schedule: warm-up ({warmup_iters}) must be shorter than training "
                         f"({total_iters})")
    return L(WarmupParamScheduler)(scheduler=constant, warmup_factor=warmup_factor,
                                   warmup_length=warmup_iters / total_iters, warmup_method="linear")


def rtdetr_recipe(dataloader, train, optimizer, *, epochs: int, iters_per_epoch: int, input_size: int = 640,
                  multi_scale=RTDETR_MULTI_SCALE, multi_scale_mode: str = "nearest", lr: float = 1e-4,
                  weight_decay: float = 1e-4, betas=(0.9, 0.999), backbone_lr_factor: float = 0.1,
                  warmup_iters: int = 0, warmup_factor: float = 0.001, ema_decay: float = 0.9999,
                  ema_ramp: float = 2000.0, clip_max_norm: float = 0.1, image_format: str = "RGB",
                  photometric_p: float = 0.5, zoom_out_p: float = 0.5, zoom_out_side=(1.0, 4.0),
                  zoom_out_fill=0, iou_crop_p: float = 0.8, min_size: float = 1.0):
    """Edit ``dataloader``, ``train`` and ``optimizer`` (an AdamW LazyCall such as
    ``configs/common/optim.py``'s) in place; return the ``lr_multiplier`` config.

    ``multi_scale``: the training sizes (heights = widths, multiples of 32, repeats weigh a
    size); RT-DETR's list is for 640 px, so another ``input_size`` needs its own list;
    None or () switches multi-scale off.
    """
    if multi_scale is RTDETR_MULTI_SCALE and input_size != 640:
        raise ValueError(f"rtdetr_recipe: RT-DETR's multi-scale list is for 640 px; give multi_scale "
                         f"for input_size={input_size} (or multi_scale=None)")
    old = dataloader.train.mapper
    dataloader.train.mapper = L(DETRDatasetMapper)(
        is_train=True,
        augmentations=rtdetr_train_augmentations(input_size, image_format, photometric_p, zoom_out_p,
                                                 zoom_out_side, zoom_out_fill, iou_crop_p, min_size),
        image_format=image_format,
        ignore_fill=old.get("ignore_fill", None),
        min_size=min_size,
    )
    dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(input_size, input_size))]
    dataloader.test.mapper.image_format = image_format

    with_grad_clip(optimizer, max_norm=clip_max_norm)
    optimizer.lr = lr
    optimizer.weight_decay = weight_decay
    optimizer.betas = tuple(betas)
    params = optimizer.params
    params.base_lr = "${..lr}"
    params.weight_decay_norm = 0.0
    # biases through overrides (not weight_decay_bias, which Detectron2 writes into this dict)
    params.overrides = {"bias": {"weight_decay": 0.0}, "in_proj_bias": {"weight_decay": 0.0}}
    params.lr_factor_func = L(LRFactorByPrefix)(factors={"backbone.": backbone_lr_factor})

    train.ema.enabled = True
    train.ema.decay = ema_decay
    train.ema.ramp = float(ema_ramp)
    sizes = [int(s) for s in multi_scale] if multi_scale else []
    train.multiscale.enabled = bool(sizes)
    train.multiscale.input_size = [input_size, input_size]
    train.multiscale.size_range = [min(sizes), max(sizes)] if sizes else [input_size, input_size]
    train.multiscale.sizes = sizes or None
    train.multiscale.period = 1
    train.multiscale.mode = multi_scale_mode
    return constant_lr_schedule(epochs * iters_per_epoch, warmup_iters, warmup_factor)
