"""SR-TOD (Cao et al., ECCV 2024): self-reconstruction and difference-map guided features."""
from .reconstruction import (DGFE, LearnableThreshold, ReconstructionFPN,  # noqa: F401
                             ReconstructionHead, difference_map)
from .model import ReconstructionTargetMixin, SRTODRCNN, SRTODRetinaNet  # noqa: F401
