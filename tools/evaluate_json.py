#!/usr/bin/env python
"""
Evaluate a COCO-format results file against a COCO-format ground-truth file with a
scale-bucket protocol (sod2/evaluation/protocols.py; the protocols are described in the
README's evaluation section).

    python tools/evaluate_json.py --gt GT.json --dt DT.json --protocol aitod \
        [--ranges name=lo,hi ...] [--max-dets a,b,c] [--iou-thrs t ...] [--output metrics.json]

Numbers are in percent; a bucket without ground truth is null (the metrics file is strict
JSON: never a NaN literal). Custom ``--ranges``
replace the protocol's buckets (an ``all`` range is implied and cannot be redefined; a
name may be given once). ``--max-dets`` are positive integers. The ground truth may use
the sod2 dialect (``ignore`` on annotations, ``ignore_regions`` on images; see
datasets/README.md).

Input checks: a ground-truth annotation whose ``image_id``/``category_id`` is not of the
type of the listed ids (the string "1" for the image 1), or whose bbox is not four finite
numbers with w, h >= 0, is refused; so is a detection with such an id or with an
``image_id`` the ground truth does not list. Detections with a NaN or infinite box or score
are dropped with one warning that counts them, as the training-time evaluator does, so that
both evaluate the same detections. Errors are one line, ``error: <file>: <entry>: ...``,
exit status 2; nothing is written then.

This tool loads only sod2's NumPy evaluation core: importing the ``sod2`` package
itself would import torch and Detectron2 to register models (seconds of start-up).
"""
import argparse
import importlib.util
import logging
import math
import os
import sys
import time
import types


def _import_eval_core():
    """Import ``sod2.evaluation``'s NumPy modules without running ``sod2/__init__``."""
    if "sod2" not in sys.modules:
        spec = importlib.util.find_spec("sod2")
        if spec is None:  # running from a checkout without `pip install -e .`
            sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            spec = importlib.util.find_spec("sod2")
        if spec is None:
            sys.exit("sod2 is not installed: run `pip install -e .` in the sod2 checkout")
        pkg = types.ModuleType("sod2")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        sys.modules["sod2"] = pkg
    from sod2.evaluation import coco_json, protocols

    return coco_json, protocols


def _atomic_write_json(obj, dest: str) -> None:
    """sod2.data.io's atomic JSON write (which also removes a killed earlier run's
    temporaries), loaded from its file: importing ``sod2.data`` would load Detectron2."""
    import sod2

    path = os.path.join(list(sod2.__path__)[0], "data", "io.py")
    spec = importlib.util.spec_from_file_location("_sod2_data_io", path)
    io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(io)
    io.atomic_write_json(obj, dest, indent=1)


def _parse_ranges(items):
    ranges = {}
    for item in items or []:
        name, sep, bounds = item.partition("=")
        try:
            lo, hi = (float(v) for v in bounds.split(","))
        except ValueError:
            sep = ""
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--ranges: expected name=lo,hi, got {item!r}")
        if name == "all":
            raise argparse.ArgumentTypeError(
                f"--ranges: {item!r}: 'all' is implied (the protocol's whole range) and cannot "
                f"be redefined; give the range another name")
        if name in ranges:
            raise argparse.ArgumentTypeError(f"--ranges: {name!r} is given twice")
        if math.isnan(lo) or math.isnan(hi) or lo < 0 or hi < lo or math.isinf(lo):
            raise argparse.ArgumentTypeError(
                f"--ranges: {item!r}: need 0 <= lo <= hi (areas in px^2; hi may be inf)")
        ranges[name] = (lo, hi)
    return ranges or None


def _parse_floats(items, what):
    if not items:
        return None
    try:
        vals = [float(v) for item in items for v in str(item).split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected numbers, got {' '.join(map(str, items))!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError(f"{what}: no value given")
    return vals


def _parse_max_dets(text):
    if not text:
        return None
    out = []
    for v in _parse_floats([text], "--max-dets"):
        if not math.isfinite(v) or v != int(v) or v < 1:
            raise argparse.ArgumentTypeError(
                f"--max-dets: {v:g} is not a positive integer (got {text!r})")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"--max-dets: a value is given twice in {text!r}")
    return out


def _parse_iou_thrs(items):
    vals = _parse_floats(items, "--iou-thrs")
    for v in vals or []:
        if not 0.0 < v <= 1.0:  # also refuses nan
            raise argparse.ArgumentTypeError(f"--iou-thrs: {v:g} is not in (0, 1]")
    return vals


def _fail(message: str):
    """A user error: one line on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _check_output(path: str) -> None:
    """Refuse, before evaluating, an output that is a folder or that cannot be written:
    the nearest existing folder on its path must accept a file (probed: ``os.access`` is
    not reliable for root or on read-only mounts). Nothing is left behind."""
    import tempfile

    if os.path.isdir(path):
        _fail(f"--output {path} is a folder; give the path of the .json file to write")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        _fail(f"--output {path}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".evaluate_json-probe-")
    except OSError as e:
        _fail(f"--output {path}: cannot create a file in {folder} ({e.strerror})")
    os.close(fd)
    os.remove(probe)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, help="COCO-format ground-truth json")
    parser.add_argument("--dt", required=True, help="COCO-format results json (list of boxes)")
    parser.add_argument("--protocol", default="coco",
                        choices=["coco", "aitod", "sodad", "tinyperson", "visdrone"])
    parser.add_argument("--ranges", nargs="+", metavar="NAME=LO,HI",
                        help="custom area buckets in px^2 (replace the protocol's)")
    parser.add_argument("--max-dets", help="comma-separated maxDets, e.g. 100,300,1500")
    parser.add_argument("--iou-thrs", nargs="+", help="IoU thresholds (space or comma separated)")
    parser.add_argument("--output", help="write the metrics as json here")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args(argv)

    try:
        ranges = _parse_ranges(args.ranges)
        max_dets = _parse_max_dets(args.max_dets)
        iou_thrs = _parse_iou_thrs(args.iou_thrs)
    except argparse.ArgumentTypeError as e:
        _fail(str(e))
    if args.output:
        _check_output(args.output)

    coco_json, protocols = _import_eval_core()
    t0 = time.perf_counter()
    ignore_from = "iscrowd" if args.protocol in ("visdrone",) else \
        protocols.get_protocol(args.protocol).ignore_from
    try:
        gt, dt = coco_json.load_coco_pair(args.gt, args.dt, ignore_from=ignore_from)
        metrics = protocols.evaluate_protocol(gt, dt, args.protocol, area_ranges=ranges,
                                              max_dets=max_dets, iou_thresholds=iou_thrs)
    except ValueError as e:  # EvaluationInputError (a UserError), or a refused override
        _fail(str(e))
    except OSError as e:
        _fail(f"{e.filename}: {e.strerror}")
    elapsed = time.perf_counter() - t0

    if not args.quiet:
        print(protocols.format_table(metrics, title=f"Evaluation ({args.protocol}) of {args.dt}:"))
        table = protocols.format_class_table(metrics)
        if table:
            print("\nPer-category AP:\n" + table)
    print(f"evaluated {len(dt.image)} detections on {len(gt.image_ids)} images in {elapsed:.2f}s")
    if args.output:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
            # atomic, and a killed earlier run's temporary is removed
            _atomic_write_json({"protocol": args.protocol, "metrics": metrics}, args.output)
        except OSError as e:
            _fail(f"--output {args.output}: cannot write ({e.strerror})")
    return metrics


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s")
    main()
