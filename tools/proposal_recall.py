#!/usr/bin/env python
"""
Class-agnostic proposal recall per size bucket of one or more trained models (CFINet's
Table 4: AR@300 by SODA-D bucket).

    python tools/proposal_recall.py --protocol sodad \
        --model RPN configs/cfinet/cfinet_plain_R18s_fpn_synthetic.py output/plain/model_final.pth \
        --model CRPN configs/cfinet/cfinet_R18s_fpn_synthetic.py output/cfinet/model_final.pth

Each model is evaluated on its config's test dataset (or --dataset) with its test-time
resizing; proposals come from the model's proposal generator (RPN, CRPN, ...). The weights
are loaded strictly (sod2.engine.checkpoint.load_for_inference): weights of another model
are refused. Errors (a missing config, a model without a proposal generator, an
unregistered dataset, unusable weights) are one line ``error: ...`` with exit status 2.
"""
import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from detectron2.config import instantiate
from detectron2.data import DatasetCatalog

from sod2.engine.checkpoint import load_for_inference
from sod2.engine.lazy_train import load_config, resolve_device
from sod2.errors import UserError
from sod2.evaluation.proposal_recall import collect_proposals, format_recall_table, proposal_recall


def _proposal_generator(cfg, config: str):
    """The config's proposal generator node (of the model a SlicedInference wraps too)."""
    model = cfg.model
    while "proposal_generator" not in model and "model" in model:
        model = model.model
    pg = model.get("proposal_generator")
    if pg is None:
        raise UserError(f"{config}: the model ({getattr(model.get('_target_'), '__name__', model.get('_target_'))}) "
                        "has no proposal generator; proposal recall needs a two-stage detector (RPN, CRPN, ...)")
    return pg


def run(args):
    rows = {}
    for name, config, weights in args.model:
        cfg = load_config(config, warn=False)
        resolve_device(cfg)
        if args.dataset:
            cfg.dataloader.test.dataset.names = args.dataset
        # proposals kept at test time must cover the largest k asked for
        pg = _proposal_generator(cfg, config)
        pg.post_nms_topk = [pg.post_nms_topk[0], max(max(args.max_proposals), pg.post_nms_topk[1])]
        model = instantiate(cfg.model).to(cfg.train.device)
        load_for_inference(model, weights)  # refuses weights of another model in one line
        props = collect_proposals(model, instantiate(cfg.dataloader.test), max(args.max_proposals))
        dicts = DatasetCatalog.get(cfg.dataloader.test.dataset.names)
        rows[name] = proposal_recall(dicts, props, args.protocol, args.max_proposals)
    table = format_recall_table(rows)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs=3, action="append", required=True,
                   metavar=("NAME", "CONFIG", "WEIGHTS"))
    p.add_argument("--dataset", help="evaluate on this dataset (default: each config's test set)")
    p.add_argument("--protocol", default="sodad", help="buckets of this protocol (default sodad)")
    p.add_argument("--max-proposals", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--output", help="also write the Markdown table here")
    args = p.parse_args(argv)
    if args.dataset:
        from sod2.data.datasets.common import require_registered

        try:
            require_registered(args.dataset)
        except ValueError as e:
            p.exit(2, f"error: --dataset: {e}\n")
    try:
        return run(args)
    except UserError as e:
        p.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
