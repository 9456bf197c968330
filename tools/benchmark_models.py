#!/usr/bin/env python3
"""
Two configs on the same data: train-step time, inference latency and peak memory, with ratios.

    python tools/benchmark_models.py --config-a configs/baselines/A.py --config-b configs/cfinet/B.py \\
        [--opts-a k=v ...] [--opts-b k=v ...] [--iters 10] [--warmup 3] [--image-size 800 800] \\
        [--inference-only] [--output report.md]

Each model is measured in its own fresh process (this file's hidden ``_worker`` mode), one after
the other, on the same batches (built from config A's data loaders, or random images of
--image-size with random boxes), so timings and peak memory are comparable; training and
inference are separate processes, since peak memory is per process. Optimizer steps run with
learning rate 0 (the same work, but untrained models cannot diverge during the measurement).
Times are medians over --iters steps after --warmup steps (:func:`sod2.utils.benchmark.
time_callable`, CUDA synchronised around each step). Peak memory is the process's peak resident
set (CPU) or the peak CUDA allocation (GPU). User errors: one line ``error: ...``, exit status 2.
"""
import argparse
import json
import os
import subprocess
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, environment_line, peak_rss_mb, ratio, run_report, time_callable


def _worker(args) -> None:
    """Measure one config (``args.mode``: train, test or both); print one line ``BENCH {json}``."""
    import numpy as np
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from sod2.engine.lazy_train import resolve_device

    torch.manual_seed(0)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config), args.opts)
    dev = resolve_device(cfg)
    data_cfg = LazyConfig.apply_overrides(LazyConfig.load(args.data_config), args.data_opts)
    model = instantiate(cfg.model).to(dev)
    cfg.optimizer.params.model = model
    # the optimizer does its full step with lr 0: models without their pretrained weights
    # would otherwise diverge within a few steps and stop the measurement
    cfg.optimizer.lr = 0.0
    optim = instantiate(cfg.optimizer)

    n = args.warmup + args.iters
    if args.image_size:
        H, W = args.image_size
        rng = np.random.default_rng(0)

        def fake(i):
            k = 30
            xy = rng.uniform(0, [W - 40, H - 40], (k, 2))
            wh = rng.uniform(4, 40, (k, 2))
            inst = Instances((H, W), gt_boxes=Boxes(torch.tensor(np.c_[xy, xy + wh], dtype=torch.float32)),
                             gt_classes=torch.tensor(rng.integers(0, 3, k)))
            return {"image": torch.randint(0, 256, (3, H, W), dtype=torch.uint8), "height": H,
                    "width": W, "instances": inst, "image_id": i}

        train_batches = [[fake(2 * i), fake(2 * i + 1)] for i in range(n)]
        test_inputs = [fake(i) for i in range(n)]
    else:
        data_cfg.dataloader.train.num_workers = 0
        loader = iter(instantiate(data_cfg.dataloader.train))
        train_batches = [next(loader) for _ in range(min(n, args.distinct_batches))]
        test_loader = instantiate(data_cfg.dataloader.test)
        test_inputs = []
        for batch in test_loader:
            test_inputs += batch
            if len(test_inputs) >= min(n, args.distinct_batches):
                break

    sync = torch.cuda.synchronize if dev.startswith("cuda") else None
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = peak_rss_mb()
    out = {"config": args.config}
    step = iter(range(n))  # the warm-up steps, then the timed ones: batch i % (distinct batches)
    if args.mode in ("train", "both"):
        model.train()

        def train_step():
            batch = train_batches[next(step) % len(train_batches)]
            losses = model(batch)
            loss = sum(losses.values())
            optim.zero_grad()
            loss.backward()
            optim.step()

        with EventStorage(0):
            out["train_step_s"] = time_callable(train_step, iters=args.iters, warmup=args.warmup,
                                                synchronize=sync).median
        out["train_batch"] = len(train_batches[0])
    if args.mode in ("test", "both"):
        model.eval()
        step = iter(range(n))

        def test_step():
            inp = test_inputs[next(step) % len(test_inputs)]
            model([{k: v for k, v in inp.items() if k != "instances"}])

        with torch.no_grad():
            out["latency_s"] = time_callable(test_step, iters=args.iters, warmup=args.warmup, synchronize=sync).median
    out["peak_rss_mb"] = peak_rss_mb()
    out["rss_before_mb"] = rss0
    if dev.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    out["device"] = dev
    print("BENCH " + json.dumps(out), flush=True)


def _run_worker(config, opts, data_config, data_opts, args, mode) -> dict:
    """Run :func:`_worker` in a fresh process; its ``BENCH`` line as a dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "_worker", "--config", config,
           "--data-config", data_config, "--mode", mode, "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--distinct-batches", str(args.distinct_batches)]
    if args.image_size:
        cmd += ["--image-size", *map(str, args.image_size)]
    cmd += ["--opts", *opts, "--data-opts", *data_opts]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"benchmark worker failed for {config}:\n{proc.stderr[-3000:]}")


def bench_models(args):
    """The report's one table: metric, A, B, B / A."""
    for path in (args.config_a, args.config_b):
        if not os.path.isfile(path):
            raise UserError(f"config file {path} does not exist")
    if args.distinct_batches < 1:
        raise UserError(f"--distinct-batches must be at least 1, got {args.distinct_batches}")
    time_callable(lambda: None, iters=args.iters, warmup=args.warmup)  # checks --iters/--warmup up front
    results = {}
    modes = ("test",) if args.inference_only else ("train", "test")
    for mode in modes:
        # peak memory is per process: measure training and inference separately
        a = _run_worker(args.config_a, args.opts_a, args.config_a, args.opts_a, args, mode)
        b = _run_worker(args.config_b, args.opts_b, args.config_a, args.opts_a, args, mode)
        results[mode] = (a, b)
    ia, ib = results["test"]
    mem = "peak_cuda_mb" if "peak_cuda_mb" in ia else "peak_rss_mb"
    rows = []
    if "train" in results:
        ta, tb = results["train"]
        rows.append(("train step (s, batch %d)" % ta["train_batch"], ta["train_step_s"], tb["train_step_s"]))
    rows.append(("inference latency (s/image)", ia["latency_s"], ib["latency_s"]))
    if "train" in results:
        rows.append((f"train {mem.replace('_', ' ')}", ta[mem], tb[mem]))
    rows.append((f"inference {mem.replace('_', ' ')}", ia[mem], ib[mem]))
    size = "x".join(map(str, args.image_size)) if args.image_size else "config A's data"
    table = ResultTable(
        ["metric", f"A: {os.path.basename(args.config_a)}", f"B: {os.path.basename(args.config_b)}", "B / A"],
        header=f"{environment_line()}\nDevice: {ia['device']}; inputs: {size}; median of {args.iters} steps after "
               f"{args.warmup} warm-up steps; each model in a fresh process.")
    for name, a, b in rows:
        table.add_row([name, f"{a:.4g}", f"{b:.4g}", ratio(b, a)])
    return [table]


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-a", required=True, help="the baseline")
    p.add_argument("--config-b", required=True)
    p.add_argument("--opts-a", nargs="*", default=[])
    p.add_argument("--opts-b", nargs="*", default=[])
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--distinct-batches", type=int, default=4)
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="random inputs of this size instead of config A's data")
    p.add_argument("--inference-only", action="store_true", help="skip the training measurement")
    p.add_argument("--output", help="also write the Markdown report here")
    return p


def _worker_parser():
    w = argparse.ArgumentParser(prog="benchmark_models.py _worker")
    w.add_argument("--config", required=True)
    w.add_argument("--data-config", required=True)
    w.add_argument("--mode", choices=["train", "test", "both"], default="both")
    w.add_argument("--iters", type=int, default=10)
    w.add_argument("--warmup", type=int, default=3)
    w.add_argument("--distinct-batches", type=int, default=4)
    w.add_argument("--image-size", type=int, nargs=2)
    w.add_argument("--opts", nargs="*", default=[])
    w.add_argument("--data-opts", nargs="*", default=[])
    return w


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_worker"]:
        _worker(_worker_parser().parse_args(argv[1:]))
        return 0
    return run_report(bench_models, get_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
