"""SODA-D on 800x800 patches (tools/split_images.py) resized x1.5 to 1200 (as CFINet);
the evaluator merges patch detections onto whole images (sodad protocol)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = None  # depends on the split (tools/split_images.py prints it)

dataloader.train.dataset.names = "sodad_train_patches"
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=1200, max_size=1200), L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "sodad_test_patches"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=1200, max_size=1200)]
