#!/usr/bin/env python
"""
Convert an official checkpoint to sod2's parameter names (a Detectron2 checkpoint that
``train.init_checkpoint`` / ``DetectionCheckpointer`` loads by exact names).

    python tools/convert_weights.py yolox yolox_s.pth output/yolox_s_sod2.pth

Subcommands (one per model family; the mapping lives in :mod:`sod2.utils.convert`):

* ``yolox IN OUT``: Megvii-BaseDetection/YOLOX ``yolox_{nano,tiny,s,m,l,x}.pth``.

Errors (missing file, not a checkpoint of that family, an unknown key) are one line on
stderr and exit status 1.
"""
from __future__ import annotations

import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sod2.utils.convert import ConversionError, convert_checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{yolox}")
    p = sub.add_parser("yolox", help="Megvii-BaseDetection/YOLOX checkpoint ({'model': state_dict, ...})")
    p.add_argument("input", help="official checkpoint (.pth)")
    p.add_argument("output", help="converted Detectron2 checkpoint (.pth)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sd = convert_checkpoint(args.kind, args.input, args.output)
    except ConversionError as e:
        print(f"convert_weights: error: {e}", file=sys.stderr)
        return 1
    print(f"converted {len(sd)} tensors ({args.kind}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
