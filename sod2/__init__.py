"""sod2: small and tiny object detection components for Detectron2.

Importing sod2 registers every dataset (lazily: no file is read until a dataset is
used) and every model component in Detectron2's registries.
"""
__version__ = "0.1.0"

from . import data, evaluation, modeling  # noqa: E402,F401  (registration side effects)
from .modeling import methods  # noqa: E402,F401  (registers the methods' classes)
from .evaluation.evaluator import ScaleBucketEvaluator  # noqa: E402,F401
