"""DETR-style set criteria: RT-DETR's SetCriterion and Better Sampling's components."""
from .better_sampling import (  # noqa: F401
    IoUTarget,
    SamplePointRefinement,
    SampleReweighting,
    ScaleAlignedTarget,
    aligned_iou_giou,
    log_reweighting_stats,
)
from .set_criterion import DEFAULT_WEIGHT_DICT, MatchedPositives, SetCriterion  # noqa: F401
