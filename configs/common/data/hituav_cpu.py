"""HIT-UAV at its native 640x512 for CPU experiments with only the public val sample: train on
its first 200 images (hituav_val_part1), evaluate on the other 90 (hituav_val_part2)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 200

dataloader.train.dataset.names = "hituav_val_part1"
dataloader.train.mapper.augmentations = [L(T.RandomFlip)(horizontal=True)]
dataloader.train.total_batch_size = 4
dataloader.train.num_workers = 1
dataloader.test.dataset.names = "hituav_val_part2"
dataloader.test.num_workers = 1
