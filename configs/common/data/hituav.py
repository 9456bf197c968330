"""HIT-UAV (thermal, 640x512 grayscale; CC BY 4.0, Suo et al. 2023) upscaled x1.5 for its
small objects; DontCare regions are ignore regions."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 2029

dataloader.train.dataset.names = "hituav_train"
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=(640, 768, 896), max_size=1120, sample_style="choice"),
     L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "hituav_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=768, max_size=960)]
