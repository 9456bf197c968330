"""The embedded synthetic tiny-object dataset (256x256 images, 3 classes, generated on first
use under $SOD2_DATASETS/sod2_synthetic), at its native size: flips only."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 480

dataloader.train.dataset.names = "sod2_synthetic_train"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True),
                                         L(T.RandomFlip)(horizontal=False, vertical=True)]
# the ignore regions are crowds of unlabelled object-like blobs: paint them over in
# training so that they are not learnt as background
dataloader.train.mapper.ignore_fill = "mean"
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "sod2_synthetic_val"
dataloader.test.num_workers = 1
dataloader.evaluator.protocol = "aitod"
