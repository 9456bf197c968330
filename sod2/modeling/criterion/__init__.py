"""RT-DETR's set criterion."""
from .set_criterion import DEFAULT_WEIGHT_DICT, MatchedPositives, SetCriterion  # noqa: F401
