"""VisDrone2019-DET: train on train, evaluate on val (as SR-TOD) with the AI-TOD buckets;
images fit in 1280 px."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

NUM_TRAIN_IMAGES = 6471

dataloader.train.dataset.names = "visdrone2019_train"
dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=(960, 1024, 1088), max_size=1280, sample_style="choice"),
     L(T.RandomFlip)(horizontal=True)]
dataloader.test.dataset.names = "visdrone2019_val"
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=1024, max_size=1280)]
