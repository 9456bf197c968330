#!/usr/bin/env python3
"""
Export a trained sod2 detector for deployment (issue "Deployment").

    python tools/export_model.py --config-file configs/fgprobe/fgprobe_yolox_tiny_p2_synthetic.py \\
        --format onnx --output export/ [--sample-image IMG] [--dynamic] \\
        --opts train.init_checkpoint=output/fgprobe_yolox_tiny_p2_synthetic/model_final.pth

Writes ``<output>/model.onnx`` and ``<output>/model.json`` (:class:`sod2.export.ExportMetadata`),
each to a temporary name first, then renamed: an error leaves nothing partial behind.

* Families: YOLOX (plain and with Foreground Probing, whose probe runs at inference and is in
  the graph) and RT-DETR (Better Sampling is training-only: the graph is the plain RT-DETR's).
  The graph takes the test mapper's image (B, 3, H, W) float32 0-255 in the model's channel
  order and does normalisation, padding, the network and post-processing (YOLOX: decode,
  score threshold, NMS as ONNX ``NonMaxSuppression``, the per-image cap; RT-DETR: top-K); the
  rescale to the original image stays in Python (:func:`sod2.export.postprocess.to_original`).
* ``--dynamic``: height, width and batch are dynamic axes (batch 1 for the R-CNN families);
  without it the graph takes only the sample's size (recorded as ``input_size`` in model.json).
  RT-DETR's encoder position embedding and anchors, precomputed for ``eval_spatial_size`` in
  eager mode, are then computed in the graph from the feature shapes; its H and W start at the
  size whose feature maps hold ``num_queries`` tokens (97 px for 300 queries at strides 8-32).
* Weights: ``train.init_checkpoint``, loaded strictly. Without one the tool refuses, unless
  ``--allow-random-weights`` (for tests and speed benchmarks, whose graphs need no training).
* ``--format torchscript``: ``torch.jit.trace`` of the same graph (YOLOX and RT-DETR, fixed size
  only: tracing records the sample's shapes) into ``model.pt``.

User errors (a missing or mismatched checkpoint, an unsupported model or option, a missing
package of the ``export`` extra): one line ``error: ...`` on stderr, exit status 2.
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

import torch
from detectron2.config import instantiate
from detectron2.data import MetadataCatalog

from sod2.errors import UserError

logger = logging.getLogger("sod2.export")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--output", default="./export", help="output folder (model.onnx / model.pt + model.json)")
    p.add_argument("--sample-image", default=None, help="image for the sample input (default: the first "
                   "image of dataloader.test's dataset)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--allow-random-weights", action="store_true",
                   help="export without train.init_checkpoint (random weights: for tests and speed benchmarks)")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return p


def _sample(cfg, mapper, sample_image):
    """The test mapper's dict of --sample-image, else of the test dataset's first image."""
    if sample_image:
        from sod2.data.io import image_size

        w, h = image_size(sample_image)
        return mapper({"file_name": sample_image, "height": h, "width": w, "image_id": 0})
    dataset = instantiate(cfg.dataloader.test.dataset)
    if len(dataset) == 0:
        raise UserError("dataloader.test.dataset is empty: give --sample-image")
    return mapper(dict(dataset[0]))


def _class_names(cfg):
    names = cfg.dataloader.test.dataset.get("names", None)
    names = [names] if isinstance(names, str) else list(names or [])
    if names and MetadataCatalog.get(names[0]).get("thing_classes", None) is not None:
        return list(MetadataCatalog.get(names[0]).thing_classes)
    return [str(i) for i in range(int(cfg.model.num_classes))]


def _postprocess_settings(model, family: str):
    """(channel order, score threshold, max detections per image, clipping) of ``model``'s own
    inference, for the metadata (informative: the graph applies them)."""
    if family == "yolox":
        cap = None if model.max_detections_per_image is None else int(model.max_detections_per_image)
        return "BGR", float(model.test_score_thresh), cap, bool(model.clip_test_boxes)
    if family == "rtdetr":
        return model.input_format, 0.0, int(model.num_top_queries), bool(model.clip_boxes)
    if family == "retinanet":
        return model.input_format, float(model.test_score_thresh), int(model.max_detections_per_image), True
    predictor = model.roi_heads.box_predictor
    predictor = predictor[-1] if isinstance(predictor, torch.nn.ModuleList) else predictor  # Cascade
    return model.input_format, float(predictor.test_score_thresh), int(predictor.test_topk_per_image), True


def _check_dynamic_axes(path: str, dynamic_hw: bool, dynamic_batch: bool) -> None:
    """The written graph's input has the dynamic axes asked for (the exporter can fall back to
    the sample's sizes when the model's code fixes them); else the file is removed and a
    RuntimeError names the fixed axes (an exporter limit, not a user error)."""
    import onnx

    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    wanted = ([0] if dynamic_batch else []) + ([2, 3] if dynamic_hw else [])
    names = {0: "batch", 2: "height", 3: "width"}
    fixed = [f"{names[i]}={dims[i].dim_value}" for i in wanted if dims[i].HasField("dim_value")]
    if fixed:
        os.remove(path)
        raise RuntimeError(f"export: the dynamo exporter fixed {', '.join(fixed)} of the dynamic input; "
                           "nothing written")


def export(args) -> dict:
    """Run the export; returns the metadata dict. Raises UserError on bad input."""
    from sod2.engine.checkpoint import load_for_inference
    from sod2.engine.lazy_train import load_config
    from sod2.export.graphs import family_of, graph_for
    from sod2.export.metadata import ExportMetadata, describe_test_augmentations
    from sod2.export.onnx import OPSET, export_onnx, require_export_packages

    if args.format == "onnx":
        require_export_packages("onnx", "onnxscript")
    if args.format == "torchscript" and args.dynamic:
        raise UserError("--format torchscript: --dynamic is not supported (tracing records the sample's "
                        "shapes); export ONNX for dynamic sizes")
    cfg = load_config(args.config_file, args.opts)
    checkpoint = cfg.train.get("init_checkpoint", None) or None
    if not checkpoint and not args.allow_random_weights:
        raise UserError(f"{args.config_file}: train.init_checkpoint is not set: give the trained weights "
                        "(--opts train.init_checkpoint=FILE), or --allow-random-weights for a graph without training")
    model = instantiate(cfg.model)
    family = family_of(model)
    if args.format == "torchscript" and family not in ("yolox", "rtdetr"):
        raise UserError(f"--format torchscript covers YOLOX and RT-DETR; export {type(model).__name__} "
                        "with --format onnx")
    if checkpoint:
        load_for_inference(model, checkpoint)
    model.eval()
    mapper = instantiate(cfg.dataloader.test.mapper)
    sample = _sample(cfg, mapper, args.sample_image)
    image = sample["image"].to(torch.float32)[None]
    if image.shape[1] != 3:
        raise UserError(f"sample image has {image.shape[1]} channels; the exported graph takes 3")
    graph = graph_for(model)
    os.makedirs(args.output, exist_ok=True)
    name = "model.onnx" if args.format == "onnx" else "model.pt"
    path = os.path.join(args.output, name)
    dynamic_hw = bool(args.dynamic)
    dynamic_batch = bool(args.dynamic) and family in ("yolox", "rtdetr")
    if args.dynamic and not dynamic_batch:
        logger.warning("--dynamic: %s graphs take one image per call: dynamic height and width, batch 1", family)
    if args.format == "onnx":
        export_onnx(graph, image, path, dynamic=dynamic_hw, dynamic_batch=dynamic_batch)
        _check_dynamic_axes(path, dynamic_hw, dynamic_batch)
    else:
        from sod2.data.io import atomic_path

        with torch.no_grad():
            traced = torch.jit.trace(graph, (image,), check_trace=False)
        with atomic_path(path) as tmp:
            torch.jit.save(traced, tmp)
    channel_order, thresh, max_det, clip = _postprocess_settings(model, family)
    meta = ExportMetadata(
        format=args.format, model_file=name, family=family, meta_architecture=type(model).__name__,
        channel_order=channel_order, pixel_mean=[float(v) for v in model.pixel_mean.flatten()],
        pixel_std=[float(v) for v in model.pixel_std.flatten()],
        test_resize=describe_test_augmentations(mapper.augmentations.augs if hasattr(mapper.augmentations, "augs")
                                                else mapper.augmentations),
        input_size=None if dynamic_hw else [int(image.shape[2]), int(image.shape[3])],
        dynamic=dynamic_hw, dynamic_batch=dynamic_batch, class_names=_class_names(cfg),
        score_threshold=thresh, max_detections_per_image=max_det, clip_boxes=clip,
        opset=OPSET if args.format == "onnx" else None, sod2_version=sod2.__version__,
        torch_version=torch.__version__, exporter="dynamo" if args.format == "onnx" else "torchscript",
        config_file=os.path.abspath(args.config_file), checkpoint=checkpoint)
    try:
        meta.to_json(os.path.join(args.output, "model.json"))
    except BaseException:
        os.remove(path)  # no model without its metadata
        raise
    return meta.to_dict()


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        meta = export(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(args.output, meta['model_file'])} and model.json "
          f"({meta['family']}, {'dynamic' if meta['dynamic'] else 'input %dx%d' % tuple(meta['input_size'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
