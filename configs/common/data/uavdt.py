"""UAVDT (DET): 30 training and 20 test sequences, 1024x540 frames kept at their size."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = None  # frames of the 30 training sequences on disk (the loader counts them)

dataloader.train.dataset.names = "uavdt_train"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "uavdt_test"
dataloader.test.mapper.augmentations = []
