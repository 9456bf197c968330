from .srtod import ReconstructionTargetMixin, SRTODRCNN, SRTODRetinaNet  # noqa: F401
