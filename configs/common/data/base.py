"""Data loading shared by sod2's dataset configs: sod2's mapper (grayscale/16-bit images,
ignore regions kept apart) and the scale-bucket evaluator. A dataset config imports
``dataloader`` from here and sets the dataset names, resizing and protocol."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, \
    get_detection_dataset_dicts
from omegaconf import OmegaConf

from sod2.data import SODDatasetMapper
from sod2.evaluation.evaluator import ScaleBucketEvaluator

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="???"),
    mapper=L(SODDatasetMapper)(
        is_train=True,
        augmentations=[L(T.RandomFlip)(horizontal=True)],
        image_format="BGR",
        ignore_fill=None,
    ),
    total_batch_size=8,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="???", filter_empty=False),
    mapper=L(SODDatasetMapper)(is_train=False, augmentations=[],
                               image_format="${...train.mapper.image_format}"),
    num_workers=4,
)
# protocol=None: the dataset's own (its metadata's eval_protocol)
dataloader.evaluator = L(ScaleBucketEvaluator)(dataset_name="${..test.dataset.names}", protocol=None,
                                               output_dir="${...train.output_dir}")
