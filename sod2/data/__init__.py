from . import datasets  # noqa: F401  (registers the datasets)
from .io import DataFormatError, read_image  # noqa: F401
from .mapper import SODDatasetMapper  # noqa: F401
from .mosaic import MosaicDataset  # noqa: F401
from .detr_augment import (DETRDatasetMapper, RandomIoUCrop, RandomPhotometricDistort,  # noqa: F401
                           RandomZoomOut, SanitizeBoxes)
from .large_images import register_large_images
from .synthetic import register_synthetic

register_synthetic()
register_large_images()
