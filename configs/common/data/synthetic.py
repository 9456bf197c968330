"""Data of the embedded synthetic tiny-object dataset (256x256 images, 3 classes;
generated on first use under $SOD2_DATASETS/sod2_synthetic)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, \
    get_detection_dataset_dicts
from omegaconf import OmegaConf

from sod2.data import SODDatasetMapper
from sod2.evaluation.evaluator import ScaleBucketEvaluator

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_train"),
    mapper=L(SODDatasetMapper)(
        is_train=True,
        augmentations=[L(T.RandomFlip)(horizontal=True),
                       L(T.RandomFlip)(horizontal=False, vertical=True)],
        image_format="BGR",
        # the ignore regions are crowds of unlabelled object-like blobs: paint them over
        # in training so they are not learnt as background
        ignore_fill="mean",
    ),
    total_batch_size=8,
    num_workers=1,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="sod2_synthetic_val", filter_empty=False),
    mapper=L(SODDatasetMapper)(is_train=False, augmentations=[],
                               image_format="${...train.mapper.image_format}"),
    num_workers=1,
)
dataloader.evaluator = L(ScaleBucketEvaluator)(dataset_name="${..test.dataset.names}",
                                               protocol="aitod")
