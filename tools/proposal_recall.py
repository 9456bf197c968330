#!/usr/bin/env python
"""
Class-agnostic proposal recall per size bucket of one or more trained models (CFINet's
Table 4: AR@300 by SODA-D bucket).

    python tools/proposal_recall.py --protocol sodad \
        --model RPN configs/cfinet/cfinet-plain_R18s_fpn_synthetic.py output/plain/model_final.pth \
        --model CRPN configs/cfinet/cfinet_R18s_fpn_synthetic.py output/cfinet/model_final.pth

Each model is evaluated on its config's test dataset (or --dataset) with its test-time
resizing; proposals come from the model's proposal generator (RPN, CRPN, ...).
"""
import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog

from sod2.engine.lazy_train import resolve_device
from sod2.evaluation.proposal_recall import collect_proposals, format_recall_table, proposal_recall


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

    rows = {}
    for name, config, weights in args.model:
        cfg = LazyConfig.load(config)
        resolve_device(cfg)
        if args.dataset:
            cfg.dataloader.test.dataset.names = args.dataset
        # proposals kept at test time must cover the largest k asked for
        pg = cfg.model.proposal_generator
        pg.post_nms_topk = [pg.post_nms_topk[0], max(max(args.max_proposals), pg.post_nms_topk[1])]
        model = instantiate(cfg.model).to(cfg.train.device)
        DetectionCheckpointer(model).load(weights)
        props = collect_proposals(model, instantiate(cfg.dataloader.test), max(args.max_proposals))
        dicts = DatasetCatalog.get(cfg.dataloader.test.dataset.names)
        rows[name] = proposal_recall(dicts, props, args.protocol, args.max_proposals)
    table = format_recall_table(rows)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
    return rows


if __name__ == "__main__":
    main()
