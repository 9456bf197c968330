"""AI-TOD: 800x800 images kept at their size; trainval -> test (as AI-TOD and SR-TOD)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 14018

dataloader.train.dataset.names = "aitod_trainval"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "aitod_test"
dataloader.test.mapper.augmentations = []
