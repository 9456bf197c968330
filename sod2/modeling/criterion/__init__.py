"""RT-DETR's set criterion."""
from .set_criterion import (  # noqa: F401
    DEFAULT_WEIGHT_DICT,
    IoUTarget,
    MatchedPositives,
    OutputSet,
    PositiveWeights,
    SetCriterion,
)
