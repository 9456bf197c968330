#!/usr/bin/env python
"""
Convert a dataset split to the sod2 JSON dialect (COCO + ignore flags + ignore regions),
the ground truth format sod2's evaluation and ``load_coco_style_json`` read.

    python tools/convert_dataset.py visdrone --root datasets/VisDrone --split val \\
        --output datasets/VisDrone/visdrone_val_sod2.json

``--root`` is the dataset's folder in the layout of datasets/README.md (default
``$SOD2_DATASETS/<folder>``). File names in the output are relative to the split's
image folder (printed; override with ``--image-root``). The output is written to a
temporary file and renamed when complete, so a failed or interrupted run leaves no file
(temporaries of killed runs are removed by the next run).

Every listed image is checked before anything is written (``--verify-images``):
``header`` (default) reads its header and end marker and compares its size with the
annotation's, ``full`` decodes it as training does, ``none`` only requires the file.
A bad image is an error naming it.
"""
from __future__ import annotations

import argparse
import collections
import functools
import logging
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sod2.data.datasets import aitod, droneswarms, hituav, sodad, tinyperson, uavdt, visdrone
from sod2.data.datasets.common import verify_records
from sod2.data.datasets.export import summarize, to_sod2_json
from sod2.data.io import VERIFY_LEVELS, DataFormatError, atomic_write_json

# dataset -> (module, split loader, class names, splits)
DATASETS = {
    "visdrone": (visdrone, visdrone.load_visdrone_split, visdrone.VISDRONE_CLASSES,
                 tuple(visdrone.VISDRONE_SPLITS)),
    "uavdt": (uavdt, uavdt.load_uavdt_split, uavdt.UAVDT_CLASSES, tuple(uavdt.UAVDT_SEQUENCES)),
    "tinyperson": (tinyperson, tinyperson.load_tinyperson_split, tinyperson.TINYPERSON_CLASSES,
                   tuple(tinyperson.TINYPERSON_SPLITS)),
    "sodad": (sodad, sodad.load_sodad_split, sodad.SODAD_CLASSES, sodad.SODAD_SPLITS),
    "hituav": (hituav, hituav.load_hituav_split, hituav.HITUAV_CLASSES, hituav.HITUAV_SPLITS),
    "aitod": (aitod, aitod.load_aitod_split, aitod.AITOD_CLASSES, aitod.AITOD_SPLITS),
    "droneswarms": (droneswarms, droneswarms.load_droneswarms_split,
                    droneswarms.DRONESWARMS_CLASSES, droneswarms.DRONESWARMS_SPLITS),
}

TEXT_FORMATS = ("visdrone", "uavdt")  # loaders that do not check images (see convert)


class _WarningTally(logging.Handler):
    """Adds up the loaders' counted warnings ("<file>: <n> <what>") by <what>."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.counts = collections.Counter()

    def emit(self, record):
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 3 and isinstance(args[1], int):
            self.counts[str(args[2])] += args[1]
        else:
            self.counts[record.getMessage()] += 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("--root", default=None,
                   help="the dataset's folder (default: $SOD2_DATASETS/<folder>)")
    p.add_argument("--split", required=True,
                   help="; ".join(f"{k}: {', '.join(v[3])}" for k, v in sorted(DATASETS.items())))
    p.add_argument("--output", required=True, help="output .json file")
    p.add_argument("--image-root", default=None,
                   help="folder the written file names are relative to (default: the split's "
                        "image folder)")
    p.add_argument("--verify-images", choices=VERIFY_LEVELS, default="header",
                   help="check every image: header (size and end marker, cheap), full "
                        "(decode the pixels), none (the file exists)")
    p.add_argument("--keep-dense", action="store_true",
                   help="tinyperson: keep dense images (skipped by default, as TinyBenchmark "
                        "trains and evaluates without them)")
    p.add_argument("--dense-threshold", type=int, default=tinyperson.DENSE_THRESHOLD,
                   help="tinyperson: an image with more boxes than this is dense "
                        f"(default {tinyperson.DENSE_THRESHOLD}, TinyBenchmark's)")
    p.add_argument("--logo-as-person", action="store_true",
                   help="tinyperson: keep boxes flagged only 'logo' as persons (default: "
                        "ignored boxes)")
    return p


def convert(args) -> dict:
    """Load, convert and write; returns the summary."""
    module, load, classes, splits = DATASETS[args.dataset]
    if args.split not in splits:
        raise SystemExit(f"error: {args.dataset} split must be one of {', '.join(splits)}")
    if os.path.isdir(args.output):
        raise SystemExit(f"error: --output {args.output} is a folder; give the path of the "
                         f".json file to write")
    kwargs = {}
    if args.dataset == "tinyperson":
        if args.dense_threshold < 0:
            raise SystemExit(f"error: --dense-threshold must be >= 0, got {args.dense_threshold}")
        kwargs = {"skip_dense": not args.keep_dense, "dense_threshold": args.dense_threshold,
                  "logo_as_ignore": not args.logo_as_person}
    tally = _WarningTally()
    log = logging.getLogger("sod2")
    log.addHandler(tally)
    try:
        # the loaders of json formats check the images at this level; those of the text
        # formats read only the headers for the sizes, so their images are checked here
        if args.dataset in TEXT_FORMATS:
            dicts = load(args.split, args.root, **kwargs)
            verify_records(dicts, f"the {args.dataset} {args.split} split", args.verify_images)
        else:
            dicts = load(args.split, args.root, verify=args.verify_images, **kwargs)
    finally:
        log.removeHandler(tally)
    image_root = args.image_root or module.split_paths(args.split, args.root)["image_root"]
    coco = to_sod2_json(dicts, classes, image_root)
    atomic_write_json(coco, args.output)
    summary = summarize(coco)
    summary.update(output=os.path.abspath(args.output), image_root=os.path.abspath(image_root),
                   warnings=dict(tally.counts))
    return summary


def print_summary(s: dict, file=None) -> None:
    p = functools.partial(print, file=file or sys.stdout)
    p(f"wrote {s['output']}")
    p(f"  file names relative to: {s['image_root']}")
    p(f"images: {s['images']} ({s['images_without_objects']} without objects)")
    p(f"objects: {sum(s['objects'].values())}")
    for name, n in s["objects"].items():
        p(f"  {name}: {n}")
    ignored = {k: v for k, v in s["ignored_boxes"].items() if v}
    p(f"ignored boxes: {sum(ignored.values())}"
      + (f" ({', '.join(f'{k} {v}' for k, v in ignored.items())})" if ignored else ""))
    p(f"ignore regions: {s['ignore_regions']}")
    p("dropped / clipped boxes and skipped images (details in the warnings above):"
      + ("" if s["warnings"] else " none"))
    for what, n in sorted(s["warnings"].items()):
        p(f"  {what}: {n}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        summary = convert(args)
    except DataFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e.filename or args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
