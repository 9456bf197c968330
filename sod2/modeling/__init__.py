"""Model components, registered in Detectron2's registries on import."""
from . import matchers, proposal_generator, roi_heads  # noqa: F401
