"""
Registrations of the datasets users bring (layouts in datasets/README.md).

:func:`register_all` only registers names and metadata: every path is resolved from
``$SOD2_DATASETS`` when a dataset is loaded (``DatasetCatalog.get``), so importing
reads no file, and calling it again is a no-op.

Metadata of every registration: ``thing_classes``; ``evaluator_type="sod2"``;
``eval_protocol`` (the scale-bucket protocol the methods' papers report it with);
``dataset_root_hint`` (the expected folder, for messages); and, where the source
numbers its categories, ``thing_dataset_id_to_contiguous_id``. Patch datasets add
``whole_image_dataset``, the registration of the images they were cut from.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, List, Sequence

from .aitod import AITOD_CLASSES, AITOD_SPLITS, load_aitod_split
from .common import register_dataset
from .droneswarms import DRONESWARMS_CLASSES, DRONESWARMS_SPLITS, load_droneswarms_split
from .hituav import HITUAV_CLASSES, HITUAV_SPLITS, load_hituav_split
from .sodad import SODAD_CLASSES, SODAD_SPLITS, load_sodad_patches_split, load_sodad_split
from .tinyperson import TINYPERSON_CLASSES, TINYPERSON_SPLITS, load_tinyperson_split
from .uavdt import UAVDT_CLASSES, UAVDT_SEQUENCES, load_uavdt_split
from .visdrone import VISDRONE_CLASSES, VISDRONE_SPLITS, load_visdrone_split

__all__ = ["register_all", "BUILTIN_DATASETS"]


def _ids(first: int, classes: Sequence[str]) -> Dict[int, int]:
    return {first + i: i for i in range(len(classes))}


def _specs() -> List[tuple]:
    """(name, loader, metadata) of every builtin dataset."""
    specs = []

    def add(name: str, loader: Callable[[], List[Dict]], classes, protocol: str, hint: str,
            ids=None, **extra):
        meta = dict(thing_classes=list(classes), evaluator_type="sod2", eval_protocol=protocol,
                    dataset_root_hint=hint, **extra)
        if ids is not None:
            meta["thing_dataset_id_to_contiguous_id"] = ids
        specs.append((name, loader, meta))

    for split, folder in VISDRONE_SPLITS.items():
        # SR-TOD evaluates VisDrone with the AI-TOD buckets
        add(f"visdrone2019_{split.replace('-', '_')}",
            functools.partial(load_visdrone_split, split), VISDRONE_CLASSES, "aitod",
            f"$SOD2_DATASETS/VisDrone/{folder}/{{images,annotations}}",
            ids=_ids(1, VISDRONE_CLASSES))
    for split in UAVDT_SEQUENCES:
        add(f"uavdt_{split}", functools.partial(load_uavdt_split, split), UAVDT_CLASSES,
            "coco", "$SOD2_DATASETS/UAVDT/{UAV-benchmark-M,UAV-benchmark-MOTD_v1.0/GT}",
            ids=_ids(1, UAVDT_CLASSES))
    for split, (ann, img) in TINYPERSON_SPLITS.items():
        # sea_person (1) and earth_person (2) are merged; the "all" task files use id 1
        add(f"tinyperson_{split}", functools.partial(load_tinyperson_split, split),
            TINYPERSON_CLASSES, "tinyperson",
            f"$SOD2_DATASETS/TinyPerson/tiny_set/{{annotations/{ann},{img}/}}", ids={1: 0})
    for split in SODAD_SPLITS:
        add(f"sodad_{split}", functools.partial(load_sodad_split, split), SODAD_CLASSES,
            "sodad", f"$SOD2_DATASETS/SODA-D/rawData/{{Annotations/{split}.json,Images/}}",
            ids=_ids(1, SODAD_CLASSES))
        add(f"sodad_{split}_patches", functools.partial(load_sodad_patches_split, split),
            SODAD_CLASSES, "sodad", f"$SOD2_DATASETS/SODA-D/patches/{{{split}.json,{split}/}}",
            ids=_ids(1, SODAD_CLASSES), whole_image_dataset=f"sodad_{split}")
    for split in AITOD_SPLITS:
        add(f"aitod_{split}", functools.partial(load_aitod_split, split), AITOD_CLASSES,
            "aitod", f"$SOD2_DATASETS/AI-TOD/{{annotations/aitod_{split}_v1.json,images/{split}/}}",
            ids=_ids(1, AITOD_CLASSES))
    for split in DRONESWARMS_SPLITS:
        # no id mapping: the category id of the released json is not documented
        add(f"droneswarms_{split}", functools.partial(load_droneswarms_split, split),
            DRONESWARMS_CLASSES, "aitod",
            f"$SOD2_DATASETS/DroneSwarms/{split}/{{{split}.json,JPEGImages/}}")
    for split in HITUAV_SPLITS:
        add(f"hituav_{split}", functools.partial(load_hituav_split, split), HITUAV_CLASSES,
            "aitod", f"$SOD2_DATASETS/hit-uav/{{annotations/{split}.json,{split}/}}",
            ids=_ids(0, HITUAV_CLASSES))
    # the val split cut in two (first 200 images by file name / the other 90), for
    # train-and-evaluate experiments where only the public val sample is at hand
    for part, sl in (("part1", slice(0, 200)), ("part2", slice(200, None))):
        add(f"hituav_val_{part}", functools.partial(_sorted_slice, "val", sl), HITUAV_CLASSES, "aitod",
            "$SOD2_DATASETS/hit-uav/{annotations/val.json,val/}", ids=_ids(0, HITUAV_CLASSES))
    return specs


def _sorted_slice(split: str, sl: slice) -> List[Dict]:
    """Images of a HIT-UAV split sorted by file name, sliced."""
    return sorted(load_hituav_split(split), key=lambda d: d["file_name"])[sl]


BUILTIN_DATASETS = tuple(name for name, _, _ in _specs())


def register_all() -> None:
    """Register every builtin dataset (idempotent; reads no file)."""
    for name, loader, meta in _specs():
        register_dataset(name, loader, **meta)
