"""TinyPerson: whole images (dense ones left out of training as TinyBenchmark does), ignore
and uncertain boxes painted over in training, TinyPerson protocol (IoU 0.25/0.5/0.75)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 746

dataloader.train.dataset.names = "tinyperson_train"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "tinyperson_test"
dataloader.test.mapper.augmentations = []

dataloader.train.mapper.ignore_fill = "mean"
