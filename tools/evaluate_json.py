#!/usr/bin/env python
"""
Evaluate a COCO-format results file against a COCO-format ground-truth file with a
scale-bucket protocol (sod2/evaluation/protocols.py, ../shared/specs/evaluation.md).

    python tools/evaluate_json.py --gt GT.json --dt DT.json --protocol aitod \
        [--ranges name=lo,hi ...] [--max-dets a,b,c] [--iou-thrs t ...] [--output metrics.json]

Numbers are in percent; a bucket without ground truth is null. Custom ``--ranges``
replace the protocol's buckets (an ``all`` range is implied). The ground truth may use
the sod2 dialect (``ignore`` on annotations, ``ignore_regions`` on images; see
datasets/README.md).

This tool loads only sod2's NumPy evaluation core: importing the ``sod2`` package
itself would import torch and Detectron2 to register models (seconds of start-up).
"""
import argparse
import importlib.util
import json
import os
import sys
import tempfile
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
        ranges[name] = (lo, hi)
    return ranges or None


def _parse_floats(items, what):
    if not items:
        return None
    try:
        return [float(v) for item in items for v in str(item).split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: expected numbers, got {items!r}") from None


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
        max_dets = None if not args.max_dets else [int(float(v)) for v in _parse_floats([args.max_dets], "--max-dets")]
        iou_thrs = _parse_floats(args.iou_thrs, "--iou-thrs")
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))

    coco_json, protocols = _import_eval_core()
    t0 = time.perf_counter()
    ignore_from = "iscrowd" if args.protocol in ("visdrone",) else \
        protocols.get_protocol(args.protocol).ignore_from
    try:
        gt, dt = coco_json.load_coco_pair(args.gt, args.dt, ignore_from=ignore_from)
        metrics = protocols.evaluate_protocol(gt, dt, args.protocol, area_ranges=ranges,
                                              max_dets=max_dets, iou_thresholds=iou_thrs)
    except (coco_json.EvaluationInputError, ValueError, KeyError) as e:
        sys.exit(f"error: {e}")
    elapsed = time.perf_counter() - t0

    if not args.quiet:
        print(protocols.format_table(metrics, title=f"Evaluation ({args.protocol}) of {args.dt}:"))
        table = protocols.format_class_table(metrics)
        if table:
            print("\nPer-category AP:\n" + table)
    print(f"evaluated {len(dt.image)} detections on {len(gt.image_ids)} images in {elapsed:.2f}s")
    if args.output:
        out_dir = os.path.dirname(os.path.abspath(args.output))
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".metrics-")
        with os.fdopen(fd, "w") as f:
            json.dump({"protocol": args.protocol, "metrics": metrics}, f, indent=1)
        os.replace(tmp, args.output)
    return metrics


if __name__ == "__main__":
    main()
