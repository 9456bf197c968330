from .cspdarknet import CSPDarknet, cspdarknet_channels  # noqa: F401
from .pafpn import YOLOPAFPN, pafpn_output_shape  # noqa: F401
from .resnet_vd import AvgPoolShortcut, DeepStem, ResNetVd, presnet_key_to_sod2  # noqa: F401
