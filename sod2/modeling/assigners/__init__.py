"""Label assigners of dense detectors."""
from .simota import SimOTAAssigner, SimOTAResult  # noqa: F401
