"""YOLOX's training recipe on any sod2 dataset config, in one call.

``lr_multiplier = yolox_recipe(dataloader, train, input_size=640, epochs=300, iters_per_epoch=N)``
turns the dataset config's training loader into :class:`sod2.data.MosaicDataset` (Mosaic,
random affine, MixUp, HSV, flip, letterbox to ``input_size``; the dataset names and ignore
painting kept), switches on model EMA (0.9998, ramp 2000), the no-augmentation tail (strong
augmentation off and the L1 loss on for the last ``no_aug_epochs`` + 1 epochs, the
reference's off-by-one) and multi-scale batches (``input_size`` +- 5 x 32 px every 10
iterations), and returns the warm-up (quadratic, ``warmup_epochs``) + cosine schedule with
its flat tail. Tiny/Nano: ``mosaic_scale=(0.5, 1.5), enable_mixup=False``.

``yolox_test_resize(dataloader, model, size)`` makes the test path the official one: the test
mapper's only augmentation is ``YOLOXTestResize(size)`` (OpenCV INTER_LINEAR to
``int(h * r), int(w * r)`` with one ratio ``r = min(size / h, size / w)``, as the official
evaluation) and the model pads the batch with 114 to the ``size`` x ``size`` square and divides
its boxes by r. Every YOLOX config uses it.
"""
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts

from sod2.data import MosaicDataset
from sod2.data.transforms import YOLOXTestResize

from .schedules import warmcos_epoch_schedule


def yolox_recipe(dataloader, train, *, input_size: int, epochs: int, iters_per_epoch: int,
                 warmup_epochs: float = 5, no_aug_epochs: int = 15, mosaic_scale=(0.1, 2.0),
                 enable_mixup: bool = True, multiscale_steps: int = 5, multiscale: bool = True,
                 max_labels: int = 120):
    """Edit ``dataloader`` and ``train`` in place; return the ``lr_multiplier`` config."""
    old = dataloader.train
    image_format = old.mapper.image_format
    dataloader.test.mapper.image_format = image_format  # it interpolated the train mapper's
    dataloader.train = L(build_detection_train_loader)(
        dataset=L(MosaicDataset)(
            dataset=L(get_detection_dataset_dicts)(names=old.dataset.names),
            input_size=(input_size, input_size),
            image_format=image_format,
            mosaic_scale=tuple(mosaic_scale),
            enable_mixup=enable_mixup,
            max_labels=max_labels,  # 120 in the reference (COCO); dense small-object data need more
            ignore_fill=old.mapper.get("ignore_fill", None),
        ),
        mapper=None,
        total_batch_size=old.total_batch_size,
        num_workers=old.num_workers,
    )
    train.ema.enabled = True
    # the reference switches at epoch index epochs - no_aug_epochs - 1 (16 epochs without mosaic)
    train.no_aug.start_iter = int(max(epochs - no_aug_epochs - 1, 0) * iters_per_epoch)
    train.multiscale.enabled = multiscale
    train.multiscale.input_size = [input_size, input_size]
    train.multiscale.size_range = [input_size - 32 * multiscale_steps, input_size + 32 * multiscale_steps]
    return warmcos_epoch_schedule(epochs, iters_per_epoch, warmup_epochs, no_aug_epochs)


def yolox_test_resize(dataloader, model, size: int):
    """Test at ``size`` as the official YOLOX evaluation (edits both configs in place): the
    test mapper's augmentations become ``[YOLOXTestResize(size)]`` and the model's test batch
    is padded to ``size`` x ``size`` (``model.backbone.square_pad``): the network input is
    the official ``preproc`` tensor."""
    dataloader.test.mapper.augmentations = [L(YOLOXTestResize)(size=size)]
    model.backbone.square_pad = size
