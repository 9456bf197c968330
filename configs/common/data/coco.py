"""COCO 2017 (Detectron2's builtin "coco_2017_train" / "coco_2017_val", under
$DETECTRON2_DATASETS/coco) for the YOLOX reference configs: letterbox-equivalent resizing
(the longer side to ``INPUT_SIZE``; the model pads to a square with 114) and horizontal
flips. YOLOX's Mosaic/MixUp/HSV pipeline is not part of this file."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .base import dataloader

INPUT_SIZE = 640

dataloader.train.dataset.names = "coco_2017_train"
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=INPUT_SIZE, max_size=INPUT_SIZE),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.total_batch_size = 64
dataloader.test.dataset.names = "coco_2017_val"
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=INPUT_SIZE, max_size=INPUT_SIZE),
]
dataloader.evaluator.protocol = "coco"


def set_input_size(dataloader, size: int):
    """Train and test at ``size`` (the longer image side) instead of ``INPUT_SIZE``."""
    mappers = [dataloader.train.get("mapper"), dataloader.test.mapper]
    for aug in (m.augmentations[0] for m in mappers if m is not None):  # (YOLOX's recipe: no train mapper)
        aug.short_edge_length = size
        aug.max_size = size
    return dataloader
