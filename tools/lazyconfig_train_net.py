#!/usr/bin/env python
"""
Train or evaluate a sod2 (or any Detectron2 LazyConfig) model.

    python tools/lazyconfig_train_net.py --config-file configs/baselines/<file>.py [key=value ...]
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model.pth
    python tools/lazyconfig_train_net.py --config-file ... --eval-only --onnx out/model.onnx
                                   # an exported model (tools/export_model.py) in ONNX Runtime, on
                                   # the config's test set and evaluator (and slicing, if any)
    python tools/lazyconfig_train_net.py --config-file ... --resume          # continue a run
    python tools/lazyconfig_train_net.py --config-file ... --num-gpus 2     # 2 processes (GPUs, or
                                                                            # CPU processes with gloo)

Multi-machine: --num-machines, --machine-rank, --dist-url as in Detectron2.

Before anything starts or is written (exit status 2, one line ``error: ...``): a missing or
unreadable config file, an override key the config does not have (the closest existing key
is named; ``+key=value`` adds a key on purpose) or a value of the wrong type, a
``num_classes`` < 1, ``train.max_iter`` < 1, ``--eval-only`` without an existing
``train.init_checkpoint``, an unusable ``train.output_dir``, a dataset that is not
registered, does not load, lists missing images or category ids outside the model's
classes, and a training set without objects (sod2/engine/preflight.py). A training takes
a lock on its output folder: a second training into the same folder stops with one line
(exit 2). ``--eval-only`` refuses a checkpoint of another model (sod2/engine/checkpoint.py).
``--onnx FILE`` (with ``--eval-only``, one process) evaluates ``FILE`` + its ``.json`` instead of
the config's model (sod2.inference.OnnxModel; ``train.init_checkpoint`` is not used); refused in
one line: onnxruntime not installed, a missing/damaged file or metadata, or a model of another
class count or channel order than the config's.
A loss that becomes NaN or infinite stops training with one line (exit 1).
``train.output_dir`` defaults to ``./output/<config file name>``.
"""
import os
import sys

from detectron2.engine import default_argument_parser

try:
    import sod2  # noqa: F401  (registers sod2's datasets and components)
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.engine.lazy_train import run_tool


def invoke_main() -> None:
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument("--onnx", metavar="FILE", default=None,
                        help="with --eval-only: evaluate this exported model (FILE.onnx + FILE.json, "
                             "tools/export_model.py) in ONNX Runtime instead of the config's model")
    args = parser.parse_args()
    sys.exit(run_tool(args))


if __name__ == "__main__":
    invoke_main()
