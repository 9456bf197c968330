"""Assignment of predictions (anchors, boxes) to ground truth."""
from .max_iou import MaxIoUMatcher  # noqa: F401
from .hungarian import HungarianMatcher  # noqa: F401
