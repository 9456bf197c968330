#!/usr/bin/env python
"""
Train or evaluate a sod2 (or any Detectron2 LazyConfig) model.

    python tools/lazyconfig_train_net.py --config-file configs/baselines/<file>.py [key=value ...]
    python tools/lazyconfig_train_net.py --config-file ... --eval-only train.init_checkpoint=model.pth
    python tools/lazyconfig_train_net.py --config-file ... --resume          # continue a run
    python tools/lazyconfig_train_net.py --config-file ... --num-gpus 2     # 2 processes (GPUs, or
                                                                            # CPU processes with gloo)

Multi-machine: --num-machines, --machine-rank, --dist-url as in Detectron2.

A missing config file, an override key the config does not have (the closest existing
key is named; ``+key=value`` adds a key on purpose) or a value of the wrong type is an
error before anything starts (exit status 2). ``train.output_dir`` defaults to
``./output/<config file name>``.
"""
import os
import sys

from detectron2.engine import default_argument_parser, launch

try:
    import sod2  # noqa: F401  (registers sod2's datasets and components)
except ImportError:  # running from a checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.engine.lazy_train import ConfigError, load_config, worker_main


def invoke_main() -> None:
    args = default_argument_parser(epilog=__doc__).parse_args()
    try:  # in this process, so that a bad config or override is one line, not a traceback per worker
        load_config(args.config_file, args.opts, warn=False)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    launch(worker_main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    invoke_main()
