"""Better Sampling on sod2's RT-DETR (and YOLOX): scale-aligned targets, sample reweighting,
sample-point refinement."""
from .better_sampling import PAPER_VFL_ALPHA, PAPER_VFL_GAMMA, BetterSampling  # noqa: F401
from .components import (  # noqa: F401
    IoUTarget,
    SamplePointRefinement,
    SampleReweighting,
    ScaleAlignedTarget,
    aligned_iou_giou,
    log_reweighting_stats,
)
