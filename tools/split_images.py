#!/usr/bin/env python
"""
Cut the images of a dataset into overlapping patches (sod2/data/split.py has the rules).

    # SODA-D, as CFINet trains on it (800 px patches, stride 650; training mode for train)
    python tools/split_images.py --dataset sodad_train --output $SOD2_DATASETS/SODA-D/patches \
        --split-name train --train-mode
    python tools/split_images.py --dataset sodad_test --output $SOD2_DATASETS/SODA-D/patches \
        --split-name test

    # any sod2-dialect / COCO-style json
    python tools/split_images.py --json ann.json --image-root images/ --output out/ \
        --split-name val --patch-size 640 --stride 512

Writes ``<output>/<split-name>/<image>_<n>.png`` and ``<output>/<split-name>.json`` (sod2
dialect, with a ``patch`` entry per image naming the whole image and the patch origin).
``<image>`` is the source image's path, extension included, relative to the folder that
holds all source images (sub-folders are kept), so ``a/x.jpg`` and ``b/x.jpg``, or
``y.jpg`` and ``y.png``, never share a patch name. The stride may not exceed the patch
size (parts of the images would be in no patch). Output appears only when complete: an
interrupted run leaves the previous output (or none), and temporaries of killed runs are
removed by the next run. Bad arguments (a ``--fill-ignore`` outside 0-255, a ``--split-name``
that is empty or a path) and unusable inputs end the run with one line ``error: ...`` and
exit status 2 before anything is written.
"""
import argparse
import json
import logging
import os
import sys
from collections import Counter

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

import cv2
from detectron2.data import DatasetCatalog, MetadataCatalog

from sod2.data.datasets.coco_style import load_coco_style_json
from sod2.data.datasets.common import require_registered
from sod2.data.datasets.export import to_sod2_json
from sod2.data.io import atomic_path, read_image, relative_names
from sod2.data.split import iter_patches
from sod2.errors import UserError

logger = logging.getLogger("sod2.split_images")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="a registered dataset name (e.g. sodad_train)")
    src.add_argument("--json", help="a COCO-style / sod2-dialect annotation file")
    p.add_argument("--image-root", help="image folder of --json")
    p.add_argument("--classes", nargs="+", help="class names of --json in order (default: by id)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--split-name", required=True, help="name of the output split (folder and json)")
    p.add_argument("--patch-size", type=int, default=800)
    p.add_argument("--stride", type=int, default=650, help="patch step (SODA-D: 800 - 150 overlap)")
    p.add_argument("--min-area-frac", type=float, default=0.4,
                   help="a clipped box keeping <= this fraction of its area is ignored")
    p.add_argument("--train-mode", action="store_true",
                   help="cut to the annotations' extent + 5 px, keep only patches with objects")
    p.add_argument("--fill-ignore", type=float, nargs="*", default=[0.0],
                   help="colour painted over ignore regions: one value 0-255 (grey) or three "
                        "(B G R) (default 0, as SODA-D); give no value to keep their pixels")
    p.add_argument("--ext", default=".png", choices=[".png", ".jpg"])
    return p.parse_args(argv)


def _check_args(args) -> None:
    """Refuse bad arguments before anything is read or written.

    Raises:
        UserError: one line naming the argument and the values it may take.
    """
    if args.patch_size <= 0 or args.stride <= 0:
        raise UserError(f"--patch-size and --stride must be positive, got {args.patch_size} and {args.stride}")
    if args.stride > args.patch_size:
        raise UserError(f"--stride {args.stride} is larger than --patch-size {args.patch_size}: "
                        f"bands of {args.stride - args.patch_size} px between patches would be in no "
                        f"patch (and their objects lost); use a stride <= the patch size")
    if not 0.0 <= args.min_area_frac <= 1.0:
        raise UserError(f"--min-area-frac must be in [0, 1], got {args.min_area_frac}")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UserError(f"--output {args.output} is a file; give a folder")
    if args.json and not args.image_root:
        raise UserError("--json needs --image-root")
    fill = args.fill_ignore
    if fill and (len(fill) not in (1, 3) or not all(0.0 <= v <= 255.0 for v in fill)):  # NaN fails too
        raise UserError(f"--fill-ignore {' '.join(f'{v:g}' for v in fill)}: give one value (grey) or three "
                        f"(B G R), each in 0-255 (the 8-bit colour painted over ignore regions)")
    name = args.split_name
    if (not name.strip() or name in (".", "..") or name.startswith(".") or "/" in name
            or os.sep in name or (os.altsep and os.altsep in name) or "\0" in name):
        raise UserError(f"--split-name {name!r}: give a plain name, not empty, without '/' and not starting "
                        f"with '.' (the folder <output>/<name> and the file <output>/<name>.json are written)")


def _load(args):
    """(records, class names) of --dataset or --json."""
    if args.dataset:
        require_registered(args.dataset)
        return DatasetCatalog.get(args.dataset), list(MetadataCatalog.get(args.dataset).thing_classes)
    records = load_coco_style_json(args.json, args.image_root, args.classes)
    with open(args.json) as f:
        cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    classes = args.classes or [c["name"] for c in cats if c["name"].lower() not in
                               ("ignore", "ignored", "dontcare", "ignored regions")]
    return records, classes


def _patch_names(records):
    """Patch name stem of each record (see the module docstring). An image listed twice, or
    names that differ only in case (one file on a case-insensitive file system), are errors:
    their patches would overwrite each other."""
    stems = relative_names([r["file_name"] for r in records])
    seen = {}
    for rec, stem in zip(records, stems):
        other = seen.setdefault(stem.casefold(), rec)
        if other is not rec:
            what = ("is listed twice (image ids {!r} and {!r})".format(other.get("image_id"), rec.get("image_id"))
                    if other["file_name"] == rec["file_name"] else
                    f"and {other['file_name']} differ only in case")
            raise ValueError(f"{rec['file_name']} {what}: their patches would overwrite each other")
    return stems


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        _check_args(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    fill = None
    if args.fill_ignore:
        fill = args.fill_ignore * 3 if len(args.fill_ignore) == 1 else args.fill_ignore

    out_dir = os.path.join(args.output, args.split_name)
    json_path = os.path.join(args.output, f"{args.split_name}.json")
    patch_records, stats = [], Counter()
    try:
        records, classes = _load(args)
        stems = _patch_names(records)
        # the folder is renamed into place first, the json last; the old json is removed
        # before, so a crash in between leaves no json (an error when loading), never a
        # json that describes other patches
        with atomic_path(json_path) as tmp_json, atomic_path(out_dir, is_dir=True) as tmp:
            for rec, stem in zip(records, stems):
                image = read_image(rec["file_name"], format="BGR")
                n = 0
                for patch, prec in iter_patches(rec, image, args.patch_size, args.stride,
                                                args.min_area_frac, args.train_mode, fill):
                    name = f"{stem}_{n}{args.ext}"
                    os.makedirs(os.path.dirname(os.path.join(tmp, name)), exist_ok=True)
                    if not cv2.imwrite(os.path.join(tmp, name), patch):
                        raise OSError(f"cannot write {os.path.join(tmp, name)}")
                    prec["file_name"] = os.path.join(out_dir, name)
                    prec["image_id"] = len(patch_records) + 1
                    patch_records.append(prec)
                    n += 1
                    stats["objects"] += sum(a["category_id"] >= 0 and not a["ignore"]
                                            for a in prec["annotations"])
                    stats["ignored"] += sum(a["category_id"] >= 0 and bool(a["ignore"])
                                            for a in prec["annotations"])
                stats["images"] += 1
                stats["patches"] += n
            with open(tmp_json, "w") as f:
                json.dump(to_sod2_json(patch_records, classes, out_dir), f)
            if os.path.exists(json_path):
                os.remove(json_path)
    except ValueError as e:  # UserError (DataFormatError) included: the input is unusable
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        sys.exit(f"error: {e}")
    print(f"{stats['images']} images -> {stats['patches']} patches of {args.patch_size} px "
          f"(stride {args.stride}); {stats['objects']} object boxes, {stats['ignored']} ignored "
          f"(clipped to <= {args.min_area_frac:.0%} or flagged); written to {out_dir} and "
          f"{json_path}")


if __name__ == "__main__":
    main()
