"""Better Sampling on sod2's RT-DETR (and YOLOX): scale-aligned targets, sample reweighting,
sample-point refinement."""
from .better_sampling import PAPER_VFL_ALPHA, PAPER_VFL_GAMMA, BetterSampling  # noqa: F401
from .components import (  # noqa: F401
    SamplePointRefinement,
    SampleReweighting,
    ScaleAlignedTarget,
    log_reweighting_stats,
)
from .criterion import BetterSamplingCriterion, SampleWeights  # noqa: F401
from .dense import BetterSamplingYOLOX, gather_locations  # noqa: F401  (registers it in META_ARCH_REGISTRY)
