#!/usr/bin/env python
"""
Convert an official checkpoint to sod2's parameter names (a Detectron2 checkpoint that
``train.init_checkpoint`` / ``DetectionCheckpointer`` loads by exact names).

    python tools/convert_weights.py yolox yolox_s.pth output/yolox_s_sod2.pth

Subcommands (one per model family; the mapping lives in :mod:`sod2.utils.convert`):

* ``yolox IN OUT``: Megvii-BaseDetection/YOLOX ``yolox_{nano,tiny,s,m,l,x}.pth``.
* ``rtdetr IN OUT``: lyuwenyu/RT-DETR (v1, ``rtdetr_pytorch``) COCO checkpoints, e.g.
  ``rtdetr_r50vd_6x_coco_from_paddle.pth``, for ``configs/rtdetr/rtdetr_r{18,34,50,50_m,101}vd_coco.py``
  (``{"ema": {"module": ...}}`` and/or ``{"model": ...}``: the EMA weights when both are there,
  as the reference evaluates them).
* ``presnet IN OUT``: the reference's ImageNet ResNet-vd backbones
  (``ResNet{18,34}_vd_pretrained_from_paddle.pth``, ``ResNet50_vd_ssld_v2_pretrained_from_paddle.pth``,
  ``ResNet101_vd_ssld_pretrained_from_paddle.pth``) -> ``backbone.*`` of sod2's RT-DETR, for
  ``train.init_checkpoint`` (the configs expect ``./weights/<name>_sod2.pth``, e.g.
  ``python tools/convert_weights.py presnet ResNet50_vd_ssld_v2_pretrained_from_paddle.pth
  weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth``).
* ``sod2-layout IN OUT``: an sod2 checkpoint saved before issue 16 moved the methods' tensors
  (SR-TOD ``backbone.fpn.*``/``backbone.{head,threshold,dgfe}.*``, Foreground Probing
  ``head.probe.*``, Better Sampling ``criterion.reweighting.*``/``reweighting.*``) -> today's
  names (``sod2.utils.convert.LEGACY_RENAMES``). Not needed to load such a file (sod2's loaders
  rename on the fly); it drops the optimizer, scheduler and iteration, so continue from it with
  ``train.init_checkpoint=OUT``.

The output is written to a temporary file in the output's folder and renamed when complete,
so a killed conversion leaves no partial file under the final name (and never touches the
input). A state dict saved from a DDP-wrapped model (every key ``module.``-prefixed) is
accepted. Errors are one line ``error: ...`` on stderr with exit status 2: a missing or
unreadable input, an output that is the input, a folder or not writable, a checkpoint of
another family (named: ``looks like a YOLOX checkpoint; use `convert_weights.py yolox```),
an unknown key.
"""
from __future__ import annotations

import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sod2.utils.convert import ConversionError, convert_checkpoint, convert_sod2_layout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True, metavar="{yolox,rtdetr,presnet,sod2-layout}")
    helps = {
        "yolox": "Megvii-BaseDetection/YOLOX checkpoint ({'model': state_dict, ...})",
        "rtdetr": "lyuwenyu/RT-DETR checkpoint ({'ema': {'module': state_dict}} and/or {'model': state_dict})",
        "presnet": "RT-DETR's ImageNet PResNet-vd weights (a bare state dict) -> backbone.* of sod2's RT-DETR",
        "sod2-layout": "an sod2 checkpoint of an older key layout (before the methods moved) -> today's keys",
    }
    for kind, text in helps.items():
        p = sub.add_parser(kind, help=text)
        p.add_argument("input", help="official checkpoint (.pth)")
        p.add_argument("output", help="converted Detectron2 checkpoint (.pth)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.kind == "sod2-layout":
        try:
            sd, applied = convert_sod2_layout(args.input, args.output)
        except ConversionError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"renamed {'; '.join(applied)}: {len(sd)} tensors -> {args.output} (optimizer, scheduler and "
              f"iteration dropped: continue with train.init_checkpoint={args.output})")
        return 0
    try:
        sd = convert_checkpoint(args.kind, args.input, args.output)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    source = getattr(sd, "source", "")
    note = f", from {source}" if source else ""
    if source == "ema.module":
        note += " (the EMA weights, which the reference evaluates)"
    print(f"converted {len(sd)} tensors ({args.kind}{note}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
