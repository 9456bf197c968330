from .reconstruction import (DGFE, LearnableThreshold, ReconstructionFPN,  # noqa: F401
                             ReconstructionHead, difference_map)
