"""DroneSwarms (SR-TOD): 1920x1080 anti-drone images, one class, AI-TOD buckets."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 6577

dataloader.train.dataset.names = "droneswarms_train"
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=1080, max_size=1920), L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "droneswarms_test"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=1080, max_size=1920)]
