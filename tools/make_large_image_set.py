#!/usr/bin/env python
"""
Write a large-image evaluation set for sliced inference (sod2/data/large_images.py has the
recipes; the registered ``sod2_large_synthetic_val`` and ``sod2_hituav_mosaic_val`` are the
default sets, generated on first use under $SOD2_DATASETS).

    # 12 synthetic 4000x3000 images: tiny objects in clusters, mostly empty clutter
    python tools/make_large_image_set.py synthetic out/large_synthetic
    python tools/make_large_image_set.py synthetic out/small --num 3 --size 1600x1200 --seed 7

    # 8 mosaics of 4x4 real HIT-UAV frames (2560x2048), 6 tiles of empty background each;
    # frames from $SOD2_DATASETS/hit-uav/val, else the repository's 17-frame sample
    python tools/make_large_image_set.py hituav-mosaic out/mosaic --grid 3x5 --empty-tiles 4 \
        --source $SOD2_DATASETS/hit-uav
    # only the 90 val frames that hituav_val_part1 does not hold (= sod2_hituav_mosaic_val_part2)
    python tools/make_large_image_set.py hituav-mosaic out/mosaic_part2 --skip-frames 200

Writes ``DEST/val/NNNNN.png``, ``DEST/annotations/val.json`` (sod2 JSON dialect: images
relative to DEST; category ids 1..K in the classes' order; ignore regions on the images)
and ``DEST/meta.json`` (the parameters), then prints the counts and the fraction of 640
and 800 px slices (overlap 0.2) that hold no object. Load the set with
``sod2.data.datasets.load_coco_style_json(DEST/annotations/val.json, DEST, classes)`` or
register it as any COCO-style set. DEST appears only when complete; an existing DEST is
replaced only with ``--overwrite``. Bad arguments (a size below 128 px, a grid with no room
for the objects, a missing source, a DEST that is a file or cannot be written) end the run
with one line ``error: ...`` and exit status 2, before anything is written.
"""
import argparse
import json
import logging
import os
import re
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.data.datasets.coco_style import load_coco_style_json
from sod2.data.datasets.hituav import HITUAV_CLASSES
from sod2.data.large_images import (HituavMosaicConfig, LargeSyntheticConfig, empty_slice_fraction,
                                    generate_hituav_mosaics, generate_large_synthetic)
from sod2.data.synthetic import SYNTHETIC_CLASSES
from sod2.errors import UserError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("synthetic", "hituav-mosaic"), help="which set")
    p.add_argument("dest", metavar="DEST", help="output folder")
    p.add_argument("--num", type=int, help="number of images (default: 12 synthetic, 8 mosaics)")
    p.add_argument("--seed", type=int, help="random seed (default 2026)")
    p.add_argument("--size", help="synthetic: image size WxH (default 4000x3000)")
    p.add_argument("--grid", help="hituav-mosaic: frames per mosaic as ROWSxCOLS (default 4x4)")
    p.add_argument("--empty-tiles", type=int, help="hituav-mosaic: empty background tiles per mosaic (default 6)")
    p.add_argument("--skip-frames", type=int, help="hituav-mosaic: use the source's frames in file-name order "
                                                   "from this index on (200: those hituav_val_part1 does not hold)")
    p.add_argument("--source", help="hituav-mosaic: HIT-UAV folder with annotations/val.json and val/ "
                                    "(default: $SOD2_DATASETS/hit-uav, else the repository's sample)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    return p.parse_args(argv)


def _pair(text: str, option: str, sep_name: str):
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text or "")
    if not m:
        raise UserError(f"{option} must be {sep_name}, e.g. 4000x3000, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _config(args):
    """The generator's config from the arguments; UserError (one line) when one is unusable."""
    given = {k: v for k, v in (("num_images", args.num), ("seed", args.seed)) if v is not None}
    if args.kind == "synthetic":
        for opt, val in (("--grid", args.grid), ("--empty-tiles", args.empty_tiles), ("--source", args.source),
                         ("--skip-frames", args.skip_frames)):
            if val is not None:
                raise UserError(f"{opt} applies to hituav-mosaic, not to synthetic")
        if args.size is not None:
            given["width"], given["height"] = _pair(args.size, "--size", "WIDTHxHEIGHT")
        return LargeSyntheticConfig(**given)
    if args.size is not None:
        raise UserError("--size applies to synthetic; a mosaic's size is --grid times the frame size")
    if args.grid is not None:
        given["grid"] = _pair(args.grid, "--grid", "ROWSxCOLS")
    if args.empty_tiles is not None:
        given["empty_tiles"] = args.empty_tiles
    if args.skip_frames is not None:
        given["skip_frames"] = args.skip_frames
    return HituavMosaicConfig(**given)


def _check_dest(dest: str, overwrite: bool) -> None:
    if os.path.isfile(dest):
        raise UserError(f"DEST {dest} is a file; give a folder")
    if os.path.isdir(dest) and os.listdir(dest) and not overwrite:
        raise UserError(f"DEST {dest} exists and is not empty; give --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(dest))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"DEST {dest}: cannot write in {parent}")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        cfg = _config(args)
        _check_dest(args.dest, args.overwrite)
        if args.kind == "synthetic":
            classes = SYNTHETIC_CLASSES
            generate_large_synthetic(args.dest, cfg)
        else:
            classes = HITUAV_CLASSES
            generate_hituav_mosaics(args.dest, cfg, args.source)
    except ValueError as e:  # UserError (DataFormatError) included
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    json_file = os.path.join(args.dest, "annotations", "val.json")
    dicts = load_coco_style_json(json_file, args.dest, classes)
    objects = sum(1 for d in dicts for a in d["annotations"] if not a["ignore"])
    with open(json_file) as f:
        regions = sum(len(i["ignore_regions"]) for i in json.load(f)["images"])
    empty = {s: empty_slice_fraction(dicts, s) for s in (640, 800)}
    print(f"{len(dicts)} images of {dicts[0]['width']}x{dicts[0]['height']}, {objects} objects, "
          f"{regions} ignore regions; slices without objects (overlap 0.2): "
          + ", ".join(f"{s} px {e}/{t} ({e / t:.0%})" for s, (e, t) in empty.items())
          + f"; written to {args.dest}")


if __name__ == "__main__":
    main()
