from .reconstruction import (DGFE, LearnableThreshold, ReconstructionFPN,  # noqa: F401
                             ReconstructionHead, difference_map)
from .cspdarknet import CSPDarknet, cspdarknet_channels  # noqa: F401
from .pafpn import YOLOPAFPN, pafpn_output_shape  # noqa: F401
