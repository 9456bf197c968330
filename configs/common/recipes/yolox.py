"""YOLOX's training recipe (Megvii-BaseDetection/YOLOX) as plain config nodes, which a config
assigns and then overrides like any other value. :func:`use_yolox_recipe` does the wiring that
every YOLOX config needs (in place) and returns the schedule::

    from ..common.recipes.yolox import use_yolox_recipe

    lr_multiplier = use_yolox_recipe(dataloader, train, input_size=640, epochs=300,
                                     iters_per_epoch=iters_per_epoch, max_labels=500)
    dataloader.train.dataset.mosaic_scale = (0.5, 1.5)   # the Mosaic node, changed like any value

which is::

    mosaic.dataset = dataloader.train.dataset                   # the data config's images, in Mosaic
    mosaic.ignore_fill = dataloader.train.mapper.ignore_fill    # and its painting of ignore regions
    mosaic.max_labels = 500                                     # (small_model=True: also
                                                                #  mosaic_scale (0.5, 1.5), no MixUp)
    dataloader.test.mapper.image_format = dataloader.train.mapper.image_format
    dataloader.train.dataset, dataloader.train.mapper = mosaic, None
    train.ema, train.multiscale = ema, multiscale
    train.multiscale.input_size = [640, 640]                    # Mosaic's output size follows it
    train.multiscale.size_range = [480, 800]
    train.no_aug.start_iter = no_aug_start_iter(300, 15, iters_per_epoch)
    lr_multiplier = warmcos_epoch_schedule(300, iters_per_epoch, warmup_epochs=5, no_aug_epochs=15)

The nodes:

* ``mosaic``: :class:`sod2.data.MosaicDataset` (Mosaic of 4 images, random affine with
  ``mosaic_scale`` 0.1-2.0, MixUp, HSV, flips, letterbox to ``train.multiscale.input_size``;
  ignore regions follow the geometry and stay ignored) around the data config's dataset;
  ``max_labels`` 120 as the reference's COCO (dense small-object data need more: 500-1000);
  Tiny/Nano: ``mosaic_scale=(0.5, 1.5)``, ``enable_mixup=False``;
* ``ema``: EMA of the weights (decay 0.9998, ramp 2000; evaluation and checkpoints use it),
  for ``train.ema``;
* ``multiscale``: every 10 iterations a batch size in ``size_range`` (``input_size`` +- 5 x 32
  px in the reference), for ``train.multiscale``;
* :func:`no_aug_start_iter`: the no-augmentation tail (Mosaic off, L1 loss on) from epoch
  ``epochs - no_aug_epochs - 1`` on (the reference's off-by-one: 16 epochs for 15), for
  ``train.no_aug.start_iter``;
* :func:`warmcos_epoch_schedule` (``configs/common/schedules.py``): quadratic warm-up, cosine,
  the last ``no_aug_epochs`` flat, for ``lr_multiplier``.

``yolox_test_resize(dataloader, model, size)`` makes the test path the official one: the test
mapper's only augmentation is ``YOLOXTestResize(size)`` (OpenCV INTER_LINEAR to
``int(h * r), int(w * r)`` with one ratio ``r = min(size / h, size / w)``, as the official
evaluation) and the model pads the batch with 114 to the ``size`` x ``size`` square and divides
its boxes by r. Every YOLOX config uses it.
"""
from detectron2.config import LazyCall as L

from sod2.data import MosaicDataset
from sod2.data.transforms import YOLOXTestResize

from ..schedules import warmcos_epoch_schedule

mosaic = L(MosaicDataset)(
    dataset="???",  # the data config's dataset node
    input_size="${train.multiscale.input_size}",
    image_format="${dataloader.test.mapper.image_format}",
    mosaic_scale=(0.1, 2.0),
    enable_mixup=True,
    max_labels=120,
    ignore_fill=None,
)
ema = dict(enabled=True, decay=0.9998, ramp=2000.0)
multiscale = dict(enabled=True, input_size=[640, 640], size_range=[480, 800], period=10)


def no_aug_start_iter(epochs: int, no_aug_epochs: int, iters_per_epoch: int) -> int:
    """The iteration at which the no-augmentation tail starts: the reference switches at epoch
    index ``epochs - no_aug_epochs - 1`` (``no_aug_epochs`` + 1 epochs without Mosaic)."""
    return int(max(epochs - no_aug_epochs - 1, 0) * iters_per_epoch)


def yolox_test_resize(dataloader, model, size: int):
    """Test at ``size`` as the official YOLOX evaluation (edits both configs in place): the
    test mapper's augmentations become ``[YOLOXTestResize(size)]`` and the model's test batch
    is padded to ``size`` x ``size`` (``model.backbone.square_pad``): the network input is
    the official ``preproc`` tensor."""
    dataloader.test.mapper.augmentations = [L(YOLOXTestResize)(size=size)]
    model.backbone.square_pad = size


def use_yolox_recipe(dataloader, train, *, input_size: int, epochs: int, iters_per_epoch: int,
                     warmup_epochs: int = 5, no_aug_epochs: int = 15, size_steps: int = 5,
                     max_labels: int = 120, small_model: bool = False):
    """Put YOLOX's recipe around a data config's loader and the ``train`` node (in place, as
    in the module docstring) and return the recipe's ``lr_multiplier``.

    Args:
        dataloader, train: the config's nodes; ``dataloader.train`` still holds the data
            config's dataset and mapper (Mosaic takes the dataset, the mapper's
            ``ignore_fill`` and image format).
        input_size: the square training size (``train.multiscale.input_size``; Mosaic's output).
        epochs, iters_per_epoch: the schedule's length.
        warmup_epochs, no_aug_epochs: quadratic warm-up and the flat tail without Mosaic
            (the reference: 5 and 15).
        size_steps: multi-scale batches in ``input_size`` +- ``size_steps`` x 32 px (5 in
            the reference).
        max_labels: Mosaic's cap on objects per image (120 as the reference's COCO).
        small_model: the reference's Tiny/Nano recipe (``mosaic_scale=(0.5, 1.5)``, no MixUp).
    """
    mosaic.dataset = dataloader.train.dataset
    mosaic.ignore_fill = dataloader.train.mapper.ignore_fill
    mosaic.max_labels = max_labels
    if small_model:
        mosaic.mosaic_scale = (0.5, 1.5)
        mosaic.enable_mixup = False
    dataloader.test.mapper.image_format = dataloader.train.mapper.image_format
    dataloader.train.dataset, dataloader.train.mapper = mosaic, None
    train.ema, train.multiscale = ema, multiscale
    train.multiscale.input_size = [input_size, input_size]
    train.multiscale.size_range = [input_size - size_steps * 32, input_size + size_steps * 32]
    train.no_aug.start_iter = no_aug_start_iter(epochs, no_aug_epochs, iters_per_epoch)
    return warmcos_epoch_schedule(epochs, iters_per_epoch, warmup_epochs=warmup_epochs,
                                  no_aug_epochs=no_aug_epochs)
