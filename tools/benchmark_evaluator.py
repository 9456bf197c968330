#!/usr/bin/env python3
"""
sod2's evaluator (tools/evaluate_json.py, whole process) against a plain pycocotools script.

    python tools/benchmark_evaluator.py [--images 200 --objects 50000 --detections 100000] \\
        [--repeats 3] [--repeats-reference 1] [--output report.md]

Both evaluate the same generated dense tiny-object set (8 classes, most objects under 32 px)
and jittered detections with AI-TOD's buckets and maxDets 100/300/1500, each as a whole process
(start-up, json loading, evaluation): ``tools/evaluate_json.py --protocol aitod`` and
``tools/pycocotools_eval.py`` (pycocotools alone). Wall time is the fastest of ``--repeats``
(``--repeats-reference``) runs (:func:`sod2.utils.benchmark.time_callable`); the report says
whether both gave identical numbers. User errors: one line ``error: ...``, exit status 2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, environment_line, run_report, time_callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_dense_set(folder, n_img, n_obj, n_det, n_cat=8, seed=0):
    """A dense tiny-object set (most objects under 32 px) and jittered detections: writes
    ``gt.json`` (COCO, ``n_img`` 800x800 images, ``n_obj`` objects) and ``dt.json`` (``n_det``
    results, 60 % jittered copies of objects) into ``folder``; returns their paths."""
    import numpy as np

    rng = np.random.default_rng(seed)
    W = H = 800
    img_of = rng.integers(1, n_img + 1, n_obj)
    s = np.exp(rng.uniform(np.log(2), np.log(64), n_obj))
    ar = np.exp(rng.uniform(-0.5, 0.5, n_obj))
    w, h = s * ar, s / ar
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    cat = rng.integers(1, n_cat + 1, n_obj)
    gt = {"images": [{"id": i + 1, "file_name": f"{i:05d}.jpg", "width": W, "height": H} for i in range(n_img)],
          "annotations": [{"id": k + 1, "image_id": int(img_of[k]), "category_id": int(cat[k]),
                           "bbox": [float(x[k]), float(y[k]), float(w[k]), float(h[k])],
                           "area": float(w[k] * h[k]), "iscrowd": int(rng.random() < 0.01)}
                          for k in range(n_obj)],
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cat + 1)]}
    n_tp = int(n_det * 0.6)
    src = rng.integers(0, n_obj, n_tp)
    j = rng.normal(0, 0.15, (n_tp, 4))
    n_fp = n_det - n_tp
    fs = np.exp(rng.uniform(np.log(2), np.log(64), n_fp))
    bx = np.concatenate([x[src] + j[:, 0] * w[src], rng.uniform(0, W - fs)])
    by = np.concatenate([y[src] + j[:, 1] * h[src], rng.uniform(0, H - fs)])
    bw = np.concatenate([w[src] * np.exp(j[:, 2]), fs])
    bh = np.concatenate([h[src] * np.exp(j[:, 3]), fs])
    bc = np.concatenate([np.where(rng.random(n_tp) < 0.9, cat[src], rng.integers(1, n_cat + 1, n_tp)),
                         rng.integers(1, n_cat + 1, n_fp)])
    bi = np.concatenate([img_of[src], rng.integers(1, n_img + 1, n_fp)])
    sc = np.round(np.concatenate([rng.beta(5, 2, n_tp), rng.beta(2, 5, n_fp)]), 3)
    dts = [{"image_id": int(bi[k]), "category_id": int(bc[k]), "score": float(sc[k]),
            "bbox": [float(bx[k]), float(by[k]), float(bw[k]), float(bh[k])]} for k in rng.permutation(n_det)]
    gt_path, dt_path = os.path.join(folder, "gt.json"), os.path.join(folder, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dts, f)
    return gt_path, dt_path


def _run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")


def bench_evaluator(args):
    """The report's one table (wall times and speed-up), with the identical-numbers line."""
    if min(args.images, args.objects, args.detections) < 1:
        raise UserError(f"--images, --objects and --detections must be at least 1, got "
                        f"{args.images}, {args.objects}, {args.detections}")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        gt, dt = make_dense_set(tmp, args.images, args.objects, args.detections)
        ours_json, ref_json = os.path.join(tmp, "ours.json"), os.path.join(tmp, "ref.json")
        ours = [sys.executable, os.path.join(ROOT, "tools", "evaluate_json.py"), "--gt", gt, "--dt", dt,
                "--protocol", "aitod", "--quiet", "--output", ours_json]
        ref = [sys.executable, os.path.join(ROOT, "tools", "pycocotools_eval.py"), gt, dt, ref_json]
        t_ours = time_callable(lambda: _run(ours), iters=args.repeats).min
        t_ref = time_callable(lambda: _run(ref), iters=max(1, args.repeats_reference)).min
        with open(ours_json) as f:
            m_ours = json.load(f)["metrics"]
        with open(ref_json) as f:
            m_ref = json.load(f)
    diffs = [abs(m_ours[k] / 100 - v) for k, v in m_ref.items() if v is not None]
    same = max(diffs) < 1e-9
    table = ResultTable(
        ["evaluator", "wall time (s)", "speed-up"],
        header=f"{environment_line()}\nDense set: {args.images} images, {args.objects} objects, {args.detections} "
               "detections, 8 classes, AI-TOD buckets, maxDets 100/300/1500; whole processes (start-up, json "
               "loading, evaluation).",
        notes=[f"Identical numbers (max |difference| {max(diffs):.1e} as a fraction): {'yes' if same else 'NO'}"])
    table.add_row(["plain pycocotools script", f"{t_ref:.2f}", "1.00x"])
    table.add_row(["tools/evaluate_json.py --protocol aitod", f"{t_ours:.2f}", f"{t_ref / t_ours:.1f}x"])
    return [table]


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--objects", type=int, default=50000)
    p.add_argument("--detections", type=int, default=100000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--repeats-reference", type=int, default=1)
    p.add_argument("--output", help="also write the Markdown report here")
    return p


def main(argv=None) -> int:
    return run_report(bench_evaluator, get_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
