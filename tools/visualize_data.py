#!/usr/bin/env python
"""
Draw a dataset's ground truth, ignored boxes and ignore regions included.

    python tools/visualize_data.py --dataset hituav_val --output vis/ --max-images 20
    python tools/visualize_data.py --dataset sod2_synthetic_train --output vis/ --source dataloader \
        --config-file configs/baselines/faster_rcnn_R18s_fpn_synthetic.py

``--source annotation`` (default) draws the dataset dicts on the original images;
``--source dataloader`` draws what the training mapper produces (after augmentation,
with ignore regions painted if the config asks for it): objects solid, ignored boxes
and regions dashed.
"""
import argparse
import os
import sys

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

import cv2
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from sod2.data.io import read_image
from sod2.utils.visualization import draw_ground_truth


def _mapper_record(mapped: dict) -> tuple:
    """(RGB image, record) of a training mapper's output, for draw_ground_truth."""
    img = mapped["image"].permute(1, 2, 0).numpy()
    annos = [{"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c)}
             for b, c in zip(mapped["instances"].gt_boxes.tensor, mapped["instances"].gt_classes)]
    ign = mapped.get("ignore_instances")
    if ign is not None:
        annos += [{"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c),
                   "ignore": 1} for b, c in zip(ign.gt_boxes.tensor, ign.gt_classes)]
    return img, {"annotations": annos}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--max-images", type=int, default=20)
    p.add_argument("--source", choices=["annotation", "dataloader"], default="annotation")
    p.add_argument("--config-file", help="with --source dataloader: config whose train mapper to use")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--no-labels", action="store_true")
    args = p.parse_args(argv)

    meta = MetadataCatalog.get(args.dataset)
    records = DatasetCatalog.get(args.dataset)[: args.max_images]
    mapper = None
    if args.source == "dataloader":
        if not args.config_file:
            p.error("--source dataloader needs --config-file")
        cfg = LazyConfig.load(args.config_file)
        mapper = instantiate(cfg.dataloader.train.mapper)
    os.makedirs(args.output, exist_ok=True)
    for rec in records:
        if mapper is None:
            rgb, r = read_image(rec["file_name"], format="RGB"), rec
        else:
            img, r = _mapper_record(mapper(rec))
            rgb = img if mapper.image_format == "RGB" else img[:, :, ::-1]
        vis = draw_ground_truth(rgb, r, meta, args.scale, not args.no_labels)
        out = os.path.join(args.output, os.path.splitext(os.path.basename(rec["file_name"]))[0] + ".png")
        cv2.imwrite(out, vis[:, :, ::-1])
    print(f"wrote {len(records)} image(s) to {args.output}")


if __name__ == "__main__":
    main()
