#!/usr/bin/env python3
"""
The reference of ``tools/benchmark_evaluator.py``: plain pycocotools, AI-TOD's buckets, nothing of sod2.

    python tools/pycocotools_eval.py GT.json DT.json OUT.json

COCOeval (bbox) with maxDets 100/300/1500 and the AI-TOD area ranges (all, verytiny < 8² px,
tiny 8²-16², small 16²-32², medium > 32²). Writes ``{"AP", "AP50", "AP_verytiny", "AP_tiny",
"AP_small", "AP_medium"}`` as fractions (None where no category has a ground-truth box in the
bucket), from COCOeval's precision array at maxDets 1500: the mean over IoU thresholds,
recall points and categories of the entries that are not -1. It imports only pycocotools and
NumPy, so the benchmark times a plain pycocotools process.
"""
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def _mean(x):
    x = x[x > -1]
    return float(x.mean()) if x.size else None


def main(gt_path, dt_path, out_path):
    gt = COCO(gt_path)
    dt = gt.loadRes(dt_path)
    E = COCOeval(gt, dt, "bbox")
    E.params.maxDets = [100, 300, 1500]
    E.params.areaRng = [[0, 1e10], [0, 64], [64, 256], [256, 1024], [1024, 1e10]]
    E.params.areaRngLbl = ["all", "verytiny", "tiny", "small", "medium"]
    E.evaluate()
    E.accumulate()
    E.summarize()
    p = E.eval["precision"]  # (IoU thresholds T, recall points R, categories K, areas A, maxDets M)
    out = {"AP": _mean(p[:, :, :, 0, 2]), "AP50": _mean(p[0, :, :, 0, 2])}
    for a, name in enumerate(E.params.areaRngLbl[1:], 1):
        out["AP_" + name] = _mean(p[:, :, :, a, 2])
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: pycocotools_eval.py GT.json DT.json OUT.json")
    main(*sys.argv[1:])
