from .feature_hook import FeatureHook, FeatureHookInput, FeatureHookOutput  # noqa: F401
from .detectron2_checked import SOD2GeneralizedRCNN, SOD2RetinaNet  # noqa: F401
from .yolox import YOLOX, YOLOXPredictions  # noqa: F401
from .rtdetr import RTDETR  # noqa: F401
