#!/usr/bin/env python3
"""
INT8 post-training quantization of an exported sod2 model for ONNX Runtime on the CPU.

    python tools/quantize_model.py --onnx export/model.onnx --dataset sod2_synthetic_train \\
        [--num-images 64] [--seed 0] [--output export_int8/] [--per-tensor] [--reduce-range] \\
        [--calibrate-method minmax]

Reads ``export/model.onnx`` + ``export/model.json`` (``tools/export_model.py``) and writes
``<output>/model.onnx`` + ``<output>/model.json`` (the float model's metadata with a
``quantization`` entry: int8, QDQ, the calibration dataset, image count and seed), each under a
temporary name first: an error leaves nothing behind. The INT8 model runs wherever the float
one does (``sod2.inference.OnnxModel``, ``tools/demo.py --onnx``,
``tools/lazyconfig_train_net.py --eval-only --onnx``).

ONNX Runtime's static quantization (:mod:`sod2.export.quantize`): per-channel int8 weights, uint8
activations whose ranges come from ``--num-images`` images of the registered ``--dataset``
(drawn with ``--seed``, resized by the export's test augmentations). The backbone, neck and
head convolutions are quantized; the post-processing (decode, scores, top-K selections, NMS,
RoIAlign and what follows it, YOLOX's Foreground Probe refinement, RT-DETR's decoder) stays
float32.

Families: YOLOX (with or without Foreground Probing), RT-DETR, the R-CNN families (Faster /
Cascade R-CNN, SR-TOD, CFINet) and RetinaNet exports. Refused in one line: a TorchScript export,
an already quantized model, a model of another family.

User errors (a missing file or metadata, an unregistered dataset, too many images, an output
folder that would overwrite the float model): one line ``error: ...`` on stderr, exit status 2.
"""
import argparse
import logging
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError


def get_parser() -> argparse.ArgumentParser:
    from sod2.export.quantize import CALIBRATION_METHODS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, metavar="FILE", help="float32 export (FILE.onnx + FILE.json)")
    p.add_argument("--dataset", required=True, help="registered dataset whose images calibrate the activations")
    p.add_argument("--num-images", type=int, default=64, help="calibration images (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the choice of calibration images")
    p.add_argument("--output", default="./export_int8", help="output folder (default ./export_int8)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor (default: per channel)")
    p.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights, for x86 CPUs without VNNI (AVX2 only), where u8 x s8 products can saturate")
    p.add_argument("--calibrate-method", choices=CALIBRATION_METHODS, default="minmax")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("sod2.export.quantize").setLevel(logging.INFO)  # what stays float32
    try:
        from sod2.export.quantize import quantize_export

        meta = quantize_export(args.onnx, args.dataset, args.output, num_images=args.num_images, seed=args.seed,
                               per_channel=not args.per_tensor, calibrate_method=args.calibrate_method,
                               reduce_range=args.reduce_range)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    q = meta.quantization
    print(f"wrote {os.path.join(args.output, meta.model_file)} and its .json (int8, {meta.family}, calibrated on "
          f"{q['num_images']} images of {q['dataset']}; {q['quantized_nodes']} nodes quantized, "
          f"{q['float_nodes']} float32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
