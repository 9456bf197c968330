#!/usr/bin/env python3
"""
Check that an exported model gives the PyTorch model's detections (issue "Deployment").

    python tools/check_export_parity.py --config-file configs/yolox/yolox_s_coco.py \\
        [--config-file configs/rtdetr/rtdetr_r18vd_coco.py ...] [--image-size 640 640] [--images 2] \\
        [--providers CPUExecutionProvider CUDAExecutionProvider ...] [--device cpu|cuda] [--dynamic] \\
        [--box-tol 1e-2] [--score-tol 1e-4] [--output report.md] [--opts KEY=VALUE ...]

For each config (:func:`sod2.export.parity.check_export_parity`): the config's model with
seeded random weights, every parameter perturbed (so that scores do not tie) and every
BatchNorm's statistics set from its input on the images (``--no-calibrate-bn`` keeps the
initial ones; deep random networks need them for sane activations), saved as a checkpoint and
exported by ``tools/export_model.py`` (fixed size, or ``--dynamic``); then the ONNX file runs
under each ONNX Runtime execution provider (``sod2.inference.OnnxModel``) and the PyTorch model
on ``--device``, on ``--images`` uniform-noise images of ``--image-size`` (original H W)
through the config's test mapper. The final detections are compared one to one: the same
count and labels, boxes (px, original image) and scores within the tolerances.

Prints a Markdown table, one row per model and provider (``--output`` writes it too). Exit
status: 0 all within the tolerances, 1 a model above them, 2 a user error (a provider this
onnxruntime does not offer, --device cuda without CUDA, a bad config or override; one line
``error: ...``).
"""
import argparse
import logging
import os
import sys
import tempfile

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError


def get_parser() -> argparse.ArgumentParser:
    from sod2.export.parity import DEFAULT_BOX_TOL, DEFAULT_SCORE_TOL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--config-file", action="append", required=True, metavar="FILE",
                   help="a config (repeat for several models)")
    p.add_argument("--image-size", nargs=2, type=int, default=[640, 640], metavar=("H", "W"),
                   help="original size of the noise images (the test mapper resizes them)")
    p.add_argument("--images", type=int, default=2, help="number of images")
    p.add_argument("--providers", nargs="+", default=["CPUExecutionProvider"], metavar="PROVIDER",
                   help="ONNX Runtime execution providers, one report row each")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the PyTorch reference")
    p.add_argument("--dynamic", action="store_true", help="export with dynamic sizes (tools/export_model.py --dynamic)")
    p.add_argument("--box-tol", type=float, default=DEFAULT_BOX_TOL, help="px, in the original image")
    p.add_argument("--score-tol", type=float, default=DEFAULT_SCORE_TOL)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.01, help="std of the noise added to every parameter")
    p.add_argument("--no-calibrate-bn", action="store_true",
                   help="keep the initial BatchNorm statistics (fine for small networks)")
    p.add_argument("--workdir", default=None, help="keep the exports and images here (default: a temporary folder)")
    p.add_argument("--output", default=None, help="also write the table to this Markdown file")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (every config)")
    return p


def run(args) -> int:
    from sod2.export.parity import check_export_parity, format_table

    if args.images < 1 or min(args.image_size) < 1:
        raise UserError(f"--images and --image-size must be positive, got {args.images} and {args.image_size}")
    if not (args.box_tol >= 0 and args.score_tol >= 0):
        raise UserError(f"--box-tol and --score-tol must be >= 0, got {args.box_tol} and {args.score_tol}")
    for f in args.config_file:
        if not os.path.isfile(f):
            raise UserError(f"{f}: no such config file")
    reports = []
    with tempfile.TemporaryDirectory(prefix="sod2_parity_") as tmp:
        for f in args.config_file:
            work = os.path.join(args.workdir or tmp, os.path.splitext(os.path.basename(f))[0])
            reports += check_export_parity(
                f, work, opts=args.opts, image_size=tuple(args.image_size), num_images=args.images,
                providers=args.providers, device=args.device, seed=args.seed, noise=args.noise,
                calibrate=not args.no_calibrate_bn, dynamic=args.dynamic, box_tol=args.box_tol,
                score_tol=args.score_tol)
    table = format_table(reports)
    print(table)
    if args.output:
        from sod2.data.io import atomic_path

        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with atomic_path(args.output) as tmp_path:
            with open(tmp_path, "w") as fh:
                fh.write(table + "\n")
    failed = [f"{r.model} ({r.provider})" for r in reports if not r.passed]
    if failed:
        print(f"above the tolerances: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
