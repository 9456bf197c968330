"""Model components, registered in Detectron2's registries on import."""
from . import backbone, matchers, meta_arch  # noqa: F401
from . import assigners, heads  # noqa: F401
