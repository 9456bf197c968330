"""Dataset registrations. See :mod:`sod2.data.datasets.common` for the conventions and
:mod:`sod2.data.datasets.builtin` for the registered names (lazy: importing reads no file)."""
from .common import IGNORE_REGION, dataset_root, make_annotation, register_dataset  # noqa: F401
from .coco_style import load_coco_style_json  # noqa: F401
from .builtin import BUILTIN_DATASETS, register_all  # noqa: F401
from .export import to_sod2_json  # noqa: F401

register_all()
