from . import datasets  # noqa: F401  (registers the datasets)
from .io import DataFormatError, read_image  # noqa: F401
