#!/usr/bin/env python3
"""
Same weights, two inference settings: are the detections the same?

    python tools/benchmark_consistency.py --config CFG --opts-b model.feature_hook.sampled_inference=False \\
        --dataset hituav_val [--max-images 20] [--opts-a train.init_checkpoint=...] [--output report.md]

Both models are built from ``--config`` (with ``--opts-a`` / ``--opts-b``), B gets A's weights
(A's ``train.init_checkpoint``, loaded strictly, or A's seeded initialisation), and both run the
config's test augmentations on the first ``--max-images`` images of ``--dataset``. Each detection
of A with score >= ``--score`` is matched to B's detection of the same class with the highest
IoU; the report counts A's detections without a twin (IoU >= ``--iou``) and the largest score
and box-coordinate differences of the matched ones (e.g. SR-TOD's sampled vs full
reconstruction). User errors: one line ``error: ...``, exit status 2.
"""
import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, environment_line, run_report


def bench_consistency(args):
    """The report's one table: detections of A and B, A's unmatched ones, the largest differences."""
    import numpy as np
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog
    from detectron2.data import transforms as T
    from detectron2.structures import pairwise_iou

    from sod2.data.io import read_image
    from sod2.engine.checkpoint import load_for_inference
    from sod2.engine.lazy_train import resolve_device

    if not os.path.isfile(args.config):
        raise UserError(f"--config: {args.config} does not exist")
    if args.dataset not in DatasetCatalog.list():
        raise UserError(f"--dataset: {args.dataset!r} is not a registered dataset")

    def build(opts):
        cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config), opts)
        resolve_device(cfg)
        torch.manual_seed(0)
        model = instantiate(cfg.model).to(cfg.train.device).eval()
        if cfg.train.init_checkpoint:  # strict: weights of another model are refused
            load_for_inference(model, cfg.train.init_checkpoint)
        return cfg, model

    cfg_a, model_a = build(args.opts_a)
    cfg_b, model_b = build(args.opts_b)
    model_b.load_state_dict(model_a.state_dict())
    augs = [instantiate(a) for a in cfg_a.dataloader.test.mapper.get("augmentations", [])]

    n_a = n_b = unmatched = 0
    max_ds = max_box = 0.0
    for rec in DatasetCatalog.get(args.dataset)[: args.max_images]:
        img = read_image(rec["file_name"], format="BGR")
        aug = T.AugInput(img)
        T.AugmentationList(augs)(aug)
        inp = [{"image": torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1))),
                "height": img.shape[0], "width": img.shape[1]}]
        with torch.no_grad():
            a = model_a(inp)[0]["instances"].to("cpu")
            b = model_b(inp)[0]["instances"].to("cpu")
        a = a[a.scores >= args.score]
        b = b[b.scores >= args.score]
        n_a, n_b = n_a + len(a), n_b + len(b)
        if len(a) and len(b):
            iou = pairwise_iou(a.pred_boxes, b.pred_boxes)
            iou[a.pred_classes[:, None] != b.pred_classes[None, :]] = 0
            best, j = iou.max(dim=1)
            ok = best >= args.iou
            unmatched += int((~ok).sum())
            if ok.any():
                max_ds = max(max_ds, float((a.scores[ok] - b.scores[j[ok]]).abs().max()))
                max_box = max(max_box, float((a.pred_boxes.tensor[ok] - b.pred_boxes.tensor[j[ok]]).abs().max()))
        else:
            unmatched += len(a)
    table = ResultTable(
        ["A", "B", "detections A", "detections B", f"A without a match in B (IoU >= {args.iou}, same class)",
         "max score difference", "max box coordinate difference (px)"],
        header=f"{environment_line()}\nDataset {args.dataset}, first {args.max_images} images, detections with "
               f"score >= {args.score}.")
    table.add_row([" ".join(args.opts_a) or "config", " ".join(args.opts_b), n_a, n_b, unmatched,
                   f"{max_ds:.2e}", f"{max_box:.2e}"])
    return [table]


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--opts-a", nargs="*", default=[])
    p.add_argument("--opts-b", nargs="*", default=[])
    p.add_argument("--dataset", required=True)
    p.add_argument("--max-images", type=int, default=20)
    p.add_argument("--score", type=float, default=0.05)
    p.add_argument("--iou", type=float, default=0.99)
    p.add_argument("--output", help="also write the Markdown report here")
    return p


def main(argv=None) -> int:
    return run_report(bench_consistency, get_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
