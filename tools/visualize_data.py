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

Outputs are named after the image's path, extension included, relative to the folder
holding all drawn images (``a/x.jpg`` -> ``<output>/a/x.jpg.png``), so images of the same
name never overwrite each other. An image that cannot be read is skipped with a message
naming it (exit status 1 at the end if any was).
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
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from sod2.data.datasets.common import require_registered
from sod2.data.io import DataFormatError, read_image, relative_names
from sod2.engine.lazy_train import ConfigError, load_config
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
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        p.exit(2, f"error: --output {args.output} is a file; give a folder\n")
    if args.source == "dataloader" and not args.config_file:
        p.error("--source dataloader needs --config-file")
    try:
        require_registered(args.dataset)
        cfg = load_config(args.config_file) if args.source == "dataloader" else None
    except (ValueError, ConfigError) as e:
        p.exit(2, f"error: {e}\n")

    meta = MetadataCatalog.get(args.dataset)
    try:
        records = DatasetCatalog.get(args.dataset)[: args.max_images]
    except DataFormatError as e:
        p.exit(1, f"error: {e}\n")
    mapper = instantiate(cfg.dataloader.train.mapper) if cfg is not None else None
    os.makedirs(args.output, exist_ok=True)
    skipped = []
    for rec, name in zip(records, relative_names([r["file_name"] for r in records])):
        try:
            if mapper is None:
                rgb, r = read_image(rec["file_name"], format="RGB"), rec
            else:
                img, r = _mapper_record(mapper(rec))
                rgb = img if mapper.image_format == "RGB" else img[:, :, ::-1]
        except DataFormatError as e:
            print(f"skipped: {e}", file=sys.stderr)
            skipped.append(str(e))
            continue
        vis = draw_ground_truth(rgb, r, meta, args.scale, not args.no_labels)
        out = os.path.join(args.output, name + ".png")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not cv2.imwrite(out, vis[:, :, ::-1]):
            p.exit(1, f"error: cannot write {out}\n")
    print(f"wrote {len(records) - len(skipped)} image(s) to {args.output}")
    if skipped:
        sys.exit(f"error: {len(skipped)} image(s) could not be read and were skipped "
                 f"(first: {skipped[0]})")


if __name__ == "__main__":
    main()
