"""Assignment of predictions (anchors, boxes) to ground truth."""
from .dynamic_iou import DynamicIoUAssigner, dynamic_iou_threshold  # noqa: F401
from .max_iou import MaxIoUMatcher  # noqa: F401
from .hungarian import HungarianMatcher  # noqa: F401
