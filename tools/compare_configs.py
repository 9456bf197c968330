#!/usr/bin/env python
"""
Train and evaluate several configs the same way, one after the other, and print their
scale-bucket results side by side (Markdown).

    python tools/compare_configs.py \
        --configs configs/cfinet/cfinet_plain_R18s_fpn_synthetic.py configs/cfinet/cfinet_R18s_fpn_synthetic.py \
        --names "Faster R-CNN" CFINet --output-dir output/cfinet_vs_plain \
        --opts train.max_iter=400 "lr_multiplier.scheduler.milestones=[300,370]" \
               lr_multiplier.scheduler.num_updates=400

A config may carry its own overrides after ``::`` (e.g. the twin without SR-TOD:
``configs/srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py::model.feature_hook=null``).
Every run also gets ``--opts`` and its own ``train.output_dir`` under --output-dir;
its evaluation (the config's ``dataloader.evaluator``, which must write
``<dataset>_metrics.json`` to the output folder) is read back for the table. Runs that
already finished are reused unless --retrain.

Without training, ``--keys-only A B`` prints the dotted keys in which two configs (each with
its ``::`` overrides) differ, one per line: a method config against its plain twin shows
exactly the method's keys, e.g.

    python tools/compare_configs.py --keys-only configs/cfinet/cfinet_R18s_fpn_synthetic.py \
        configs/cfinet/cfinet_plain_R18s_fpn_synthetic.py
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _metrics(out_dir):
    files = sorted(glob.glob(os.path.join(out_dir, "*_metrics.json")))
    if not files:
        return None
    with open(files[-1]) as f:
        return json.load(f)


def table(names, results, keys=None):
    """Markdown table; rows = runs, columns = the metrics (percent, '-' when missing)."""
    keys = keys or [k for k in results[0]["metrics"] if not k.startswith("AP-")]
    head = "| run | " + " | ".join(keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for n, r in zip(names, results):
        vals = ["-" if r["metrics"].get(k) is None else f"{r['metrics'][k]:.1f}" for k in keys]
        lines.append(f"| {n} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def _load(spec):
    from detectron2.config import LazyConfig
    from sod2.engine.lazy_train import apply_checked_overrides

    path, *own = spec.split("::")
    if not os.path.isfile(path):
        sys.exit(f"error: no such config file: {path}")
    return apply_checked_overrides(LazyConfig.load(path), own, warn=False)


def print_key_difference(a, b):
    """Print the dotted keys in which the configs ``a`` and ``b`` (``path[::key=value...]``)
    differ (:func:`sod2.config.config_difference`); returns them."""
    from sod2.config import config_difference
    from sod2.errors import UserError

    try:
        keys = config_difference(_load(a), _load(b))
    except UserError as e:
        sys.exit(f"error: {e}")
    print("\n".join(keys) if keys else "(no difference)")
    return keys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+")
    p.add_argument("--keys-only", nargs=2, metavar=("A", "B"),
                   help="print the keys in which configs A and B differ (no training) and exit")
    p.add_argument("--names", nargs="+", help="row names (default: config file names)")
    p.add_argument("--output-dir")
    p.add_argument("--opts", nargs="*", default=[], help="key=value overrides for every run")
    p.add_argument("--retrain", action="store_true", help="train again even if results exist")
    args = p.parse_args(argv)
    if args.keys_only:
        return print_key_difference(*args.keys_only)
    if not args.configs or not args.output_dir:
        p.error("--configs and --output-dir are required (or --keys-only A B)")
    names = args.names or [os.path.splitext(os.path.basename(c.split("::")[0]))[0] for c in args.configs]
    if len(names) != len(args.configs):
        p.error("--names must name every config")

    results, times = [], []
    for cfg, name in zip(args.configs, names):
        out = os.path.join(args.output_dir, re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_"))
        done = os.path.exists(os.path.join(out, "model_final.pth")) and _metrics(out)
        t0 = time.time()
        if args.retrain or not done:
            print(f"=== training {name} ({cfg}) -> {out}", flush=True)
            path, *own = cfg.split("::")
            cmd = [sys.executable, os.path.join(ROOT, "tools", "lazyconfig_train_net.py"),
                   "--config-file", path, *args.opts, *own, f"train.output_dir={out}"]
            if subprocess.run(cmd).returncode != 0:
                sys.exit(f"error: training {name} failed (log: {out}/log.txt)")
        m = _metrics(out)
        if m is None:
            sys.exit(f"error: {out} has no *_metrics.json: does the config's evaluator write output_dir?")
        results.append(m)
        times.append(time.time() - t0)
    report = "\n".join([
        f"Protocol: {results[0]['protocol']} (percent). Same data, schedule and overrides for every run.",
        "", table(names, results), "",
        "Wall time: " + ", ".join(f"{n} {t / 60:.1f} min" for n, t in zip(names, times))])
    print("\n" + report)
    with open(os.path.join(args.output_dir, "comparison.md"), "w") as f:
        f.write(report + "\n")
    return results


if __name__ == "__main__":
    main()
