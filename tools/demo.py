#!/usr/bin/env python
"""
Run a trained model on images, folders, videos or a registered dataset and draw the
detections with Detectron2's Visualizer.

    python tools/demo.py --config-file CFG --input a.jpg folder/ clip.mp4 --output out/ \
        --opts train.init_checkpoint=model_final.pth
    python tools/demo.py --config-file CFG --dataset sod2_synthetic_val --max-images 8 \
        --with-ground-truth --output out/ --opts train.init_checkpoint=model_final.pth

Images are read like training images (grayscale and 16-bit files become 3-channel
8-bit) and go through the config's test-time mapper (resizing) before the model.
``--with-ground-truth`` (datasets only) draws predictions next to the annotations,
ignore regions included. Videos are written as mp4 with the detections drawn.

``--onnx FILE`` draws the detections of an exported model (``tools/export_model.py``: FILE and
its ``.json``) run by ONNX Runtime (sod2.inference.OnnxModel) instead of the config's model;
everything else (slicing, drawing, datasets) is the same. With ``--config-file`` the config's
test mapper resizes the images (and a sliced config's model slices them); the exported model
must have the config's class count and channel order. Without ``--config-file`` the export's
metadata gives the resizing (its ``test_resize``, the exported config's test mapper) and the
class names:

    python tools/demo.py --onnx out/model.onnx --input a.jpg --output out/

``--slice SIZE [--overlap R]`` runs sliced inference (sod2/inference): the image is cut at
its own resolution into SIZE px slices overlapping by R, each slice goes through the test
mapper's resizing, and the detections are merged (NMS, IoU 0.5, per class);
``--show-slices`` draws the slice grid over the detections (also for configs whose model is
already sliced, e.g. made with configs/common/slicing.py). ``--guided [T]`` (with ``--slice`` or
a sliced config) runs guided slicing (sod2/inference/guided.py): the full image first, then only
the slices where its foreground map reaches T (default 0.1) within ``--guided-margin`` px
(default 32); with ``--show-slices`` the slices that ran are outlined in colour and numbered,
the skipped ones in grey.

Outputs are named after the input's path, extension included, relative to the folder
holding all inputs (``a/x.jpg`` -> ``<output>/a/x.jpg.png``, ``clip.mp4`` ->
``<output>/clip.mp4.mp4``), so inputs of the same name never overwrite each other.
An image or video that cannot be read is skipped with a message naming it; the others
are drawn, and the run ends with the number skipped (exit status 1 if any). Refused in one
line with exit status 2 before any image runs: a folder without images, an ``--output``
that is a file or cannot be written, an output path that an existing folder takes, and
``--slice``/``--overlap`` values outside their ranges (a positive integer; [0, 1)).
The drawing takes about three times the drawn picture's bytes
(:class:`sod2.utils.visualization.OverlayVisualizer`), however large the image.
"""
import argparse
import glob
import logging
import os
import sys
import tempfile
from typing import Optional

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

import cv2
import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog

from sod2.data.datasets.common import require_registered
from sod2.data.io import DataFormatError, read_image, relative_names, to_uint8_rgb
from sod2.data.transforms import single_resize_ratio
from sod2.engine.lazy_train import ConfigError, load_config, resolve_device
from sod2.errors import UserError
from sod2.inference import SlicedInference, draw_slice_windows
from sod2.inference.sliced import check_slicing_args
from sod2.utils.visualization import (draw_ground_truth, draw_heatmap, draw_predictions, foreground_map,
                                      side_by_side)

logger = logging.getLogger("sod2.demo")
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv")


class Predictor:
    """Model + the config's test mapper; ``__call__(rgb image) -> Instances``.

    With ``visuals="reconstruction"`` (SR-TOD models), :meth:`reconstruction_panels` returns
    the last image's reconstruction and thresholded difference map at the original size; with
    ``visuals="foreground"`` (YOLOX, with or without Foreground Probing),
    :meth:`foreground_panels` its foreground (objectness) heat maps before and after
    refinement."""

    def __init__(self, cfg, visuals: Optional[str] = None, slicing: Optional[dict] = None,
                 onnx: Optional[str] = None):
        """``cfg`` may be None with ``onnx`` (an exported model, sod2.inference.OnnxModel):
        the resizing then comes from the export's metadata."""
        if onnx is not None:
            self._init_onnx(cfg, onnx, visuals, slicing)
            return
        if slicing is not None and visuals is not None:
            raise ValueError("--slice cannot be combined with --show-reconstruction or --show-foreground")
        if visuals == "reconstruction":
            from sod2.modeling.methods.srtod import SRTOD

            hook = cfg.model.get("feature_hook")
            if hook is None or not (isinstance(hook.get("_target_"), type) and issubclass(hook._target_, SRTOD)):
                raise ValueError("--show-reconstruction needs an SR-TOD model (model.feature_hook = SR-TOD's hook)")
            cfg.model.feature_hook.return_visuals = True
        elif visuals == "foreground":
            from sod2.modeling.meta_arch import YOLOX

            target = cfg.model.get("_target_")
            if not (isinstance(target, type) and issubclass(target, YOLOX)):
                raise ValueError("--show-foreground needs a YOLOX model (with or without Foreground Probing)")
            cfg.model.return_visuals = True
        self.model = instantiate(cfg.model).to(cfg.train.device).eval()
        if not cfg.train.init_checkpoint:
            logger.warning("train.init_checkpoint is empty: the model has random weights")
        else:  # strict: weights of another model size/kind are refused in one line
            from sod2.engine.checkpoint import load_for_inference
            load_for_inference(self.model, cfg.train.init_checkpoint)
        mapper_cfg = cfg.dataloader.test.mapper
        self.augs = [instantiate(a) for a in mapper_cfg.get("augmentations", [])]
        self.format = mapper_cfg.get("image_format", "BGR")
        self._slice(slicing)

    def _slice(self, slicing: Optional[dict]) -> None:
        """Wrap the model for ``--slice``: the mapper's resizing moves to each slice."""
        if slicing is not None:
            if isinstance(self.model, SlicedInference):
                raise ValueError("the config's model is already sliced: change it with --opts model.slice_size=... "
                                 "instead of --slice")
            self.model = SlicedInference(self.model, slice_augmentations=self.augs, **slicing).eval()
            self.augs = []

    def _init_onnx(self, cfg, onnx: str, visuals: Optional[str], slicing: Optional[dict]) -> None:
        from sod2.export.metadata import build_test_augmentations
        from sod2.inference.onnx_model import OnnxModel, check_against_config, like_config_model

        if visuals is not None:
            raise ValueError(f"--show-{visuals} draws the PyTorch model's inner maps; an exported model "
                             "(--onnx) has none")
        model = OnnxModel(onnx)
        if cfg is None:
            self.model, self.augs = model, build_test_augmentations(model.metadata)
        else:
            check_against_config(model, cfg, "--config-file")
            self.model = like_config_model(model, cfg.model)
            self.augs = [instantiate(a) for a in cfg.dataloader.test.mapper.get("augmentations", [])]
        self.format = model.input_format
        self._slice(slicing)

    @property
    def sliced(self) -> Optional[SlicedInference]:
        """The sliced-inference wrapper (--slice, or a config whose model is sliced), or None."""
        return self.model if isinstance(self.model, SlicedInference) else None

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray):
        from detectron2.data import transforms as T

        h, w = rgb.shape[:2]
        img = rgb if self.format == "RGB" else rgb[:, :, ::-1]
        aug = T.AugInput(np.ascontiguousarray(img))
        transforms = T.AugmentationList(self.augs)(aug)
        tensor = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        self._input_hw, self._orig_hw = aug.image.shape[:2], (h, w)
        inp = {"image": tensor, "height": h, "width": w}
        ratio = single_resize_ratio(transforms)  # as the test mapper: YOLOX maps its boxes back by it
        if ratio is not None:
            inp["resize_ratio"] = ratio
        out = self.model([inp])[0]
        self._visuals = out.get("visuals")  # the model's pictures of this image (--show-*), or None
        self.selection = out.get("slicing")  # guided slicing's SliceSelection of this image, or None
        return out["instances"]

    def foreground_panels(self, rgb: np.ndarray):
        """(before, after): the foreground probabilities of the last image before and after
        Foreground Probing, as heat maps over ``rgb`` (H, W, 3) at the original size."""
        fm = self._visuals  # sod2.modeling.meta_arch.yolox.ForegroundMaps of the last image
        return tuple(draw_heatmap(rgb, foreground_map([m.cpu().numpy() for m in fm.level_maps(which)],
                                                      fm.strides, self._input_hw, self._orig_hw))
                     for which in ("before", "after"))

    def reconstruction_panels(self):
        """(reconstruction RGB, binary difference map as grey RGB), uint8 at the original size."""
        vis = self._visuals  # sod2.modeling.methods.srtod.ReconstructionVisuals of the last image
        (hi, wi), (h, w) = self._input_hw, self._orig_hw
        rec = vis.reconstruction[:, :hi, :wi].permute(1, 2, 0).cpu().numpy()
        rec = cv2.resize((rec * 255).round().astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
        if vis.binary_map is None:  # reconstruction-only model
            return rec, None
        m = vis.binary_map[0, :hi, :wi].cpu().numpy()
        m = cv2.resize((m * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        return rec, np.repeat(m[:, :, None], 3, axis=2)


def _slicing_args(size: Optional[str], overlap: Optional[str]) -> Optional[dict]:
    """SlicedInference's settings of ``--slice SIZE [--overlap R]`` (None without --slice).

    Raises:
        UserError: one line naming the flag and the values it may take (``--slice 0``,
            ``--overlap -0.1``, ``--overlap 1``, ``--overlap nan``, ``--overlap`` alone).
    """
    if size is None:
        if overlap is not None:
            raise UserError("--overlap needs --slice")
        return None
    try:
        slice_size = int(size)
    except ValueError:
        slice_size = size
    try:
        ratio = 0.2 if overlap is None else float(overlap)
    except ValueError:
        ratio = overlap
    given = {"slice_size": f"--slice {size}", "overlap": f"--overlap {overlap}"}  # as typed
    check_slicing_args(lambda arg, value: given[arg], slice_size=slice_size, overlap=ratio)
    return {"slice_size": slice_size, "overlap": ratio}


def _check_output_folder(folder: str) -> None:
    """Make sure that ``--output`` is or can become a folder in which files can be written,
    without creating anything: a file is written and removed in ``folder``, or in its
    deepest existing parent when it does not exist yet.

    Raises:
        UserError: it is a file, or lies under one, or cannot be written to (read-only
            file system, no permission).
    """
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"--output {folder} is a file; give a folder")
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--output {folder}: {existing} is a file, so the folder cannot be made")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sod2-demo-write-test-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError(f"--output {folder}: cannot write in {existing} ({e.strerror or e})") from None


def _check_outputs(folder: str, names) -> None:
    """Refuse output names (relative to ``folder``) that an existing folder, or a file in
    the place of one of their folders, would keep from being written: before any image runs.

    Raises:
        UserError: naming the first such path.
    """
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            raise UserError(f"{path}: an output image would be written there, but it is an existing folder")
        parent = os.path.dirname(path)
        while parent and os.path.normpath(parent) != os.path.normpath(folder):
            if os.path.exists(parent) and not os.path.isdir(parent):
                raise UserError(f"{parent}: an output folder would be made there, but it is an existing file")
            parent = os.path.dirname(parent)


def _inputs(paths):
    """The files that ``--input`` names (folders: their images), each once, in order.

    Raises:
        FileNotFoundError: an input that is neither a file, a folder nor a matching pattern,
            or a folder without images.
    """
    out = []
    for p in paths:
        if os.path.isdir(p):
            found = [f for f in sorted(glob.glob(os.path.join(p, "*"))) if f.lower().endswith(IMAGE_EXT)]
            if not found:
                raise FileNotFoundError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_EXT)}; "
                                        "videos are given by name)")
            out += found
        elif any(ch in p for ch in "*?["):
            matched = sorted(f for f in glob.glob(p) if os.path.isfile(f))
            if not matched:
                raise FileNotFoundError(f"{p}: no file matches")
            out += matched
        elif os.path.isfile(p):
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    seen = set()
    return [f for f in out if not (os.path.abspath(f) in seen or seen.add(os.path.abspath(f)))]


def _save(path: str, rgb: np.ndarray) -> None:
    """Write a drawing (H, W, 3) uint8 RGB, which this turns to BGR in place (no copy).

    Raises:
        UserError: the file cannot be written (one line naming it).
    """
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        ok = cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb))
    except (OSError, cv2.error) as e:
        raise UserError(f"{path}: cannot write the drawing ({getattr(e, 'strerror', None) or e})") from None
    if not ok:
        raise UserError(f"{path}: cannot write the drawing")


def run_video(pred: Predictor, path: str, out_path: str, meta, args) -> str:
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise DataFormatError(f"{path}: cannot open video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        rgb = to_uint8_rgb(frame, source=f"{path} frame {n}")
        vis = draw_predictions(rgb, pred(rgb), meta, args.scale, args.confidence_threshold,
                               not args.no_labels)
        if writer is None:
            os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
            writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (vis.shape[1], vis.shape[0]))
        writer.write(np.ascontiguousarray(vis[:, :, ::-1]))
        n += 1
    cap.release()
    if writer is None:
        raise DataFormatError(f"{path}: no frame could be read")
    writer.release()
    logger.info("%s: %d frames -> %s", path, n, out_path)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", help="the model's config (optional with --onnx)")
    parser.add_argument("--onnx", metavar="FILE",
                        help="draw an exported model's detections (FILE.onnx + FILE.json, run by ONNX Runtime) "
                             "instead of the config's model")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", nargs="+", help="images, folders, glob patterns or videos")
    src.add_argument("--dataset", help="a registered dataset")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--max-images", type=int, default=None, help="with --dataset: first N")
    parser.add_argument("--with-ground-truth", action="store_true",
                        help="with --dataset: draw the annotations next to the predictions")
    parser.add_argument("--confidence-threshold", type=float, default=0.3)
    parser.add_argument("--scale", type=float, default=1.0, help="drawing scale (tiny objects: 2-4)")
    parser.add_argument("--no-labels", action="store_true", help="draw boxes only")
    parser.add_argument("--show-reconstruction", action="store_true",
                        help="SR-TOD models: also draw the reconstructed image and the thresholded "
                             "difference map next to the detections")
    parser.add_argument("--show-foreground", action="store_true",
                        help="YOLOX models: also draw the foreground (objectness) scores before and "
                             "after Foreground Probing as heat maps next to the detections")
    parser.add_argument("--slice", metavar="SIZE",
                        help="sliced inference: cut each image into SIZE px slices (at its own "
                             "resolution) and merge their detections")
    parser.add_argument("--overlap", metavar="R",
                        help="with --slice: fraction of a slice shared with its neighbour, in [0, 1) "
                             "(default 0.2)")
    parser.add_argument("--show-slices", action="store_true",
                        help="draw the slice grid (with --slice, or a config whose model is sliced)")
    parser.add_argument("--guided", nargs="?", const=0.1, type=float, metavar="T",
                        help="guided slicing (with --slice or a sliced config): run the full image, then "
                             "only the slices where its foreground map reaches T (default 0.1)")
    parser.add_argument("--guided-margin", type=int, default=32, metavar="PX",
                        help="with --guided: pixels added around each slice before reading the map")
    parser.add_argument("--guided-size", type=int, default=None, metavar="PX",
                        help="with --guided: longest side of the full-image pass (default: the model's test resize)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides key=value (e.g. train.init_checkpoint=...), "
                             "checked as the trainer checks them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        slicing = _slicing_args(args.slice, args.overlap)
        _check_output_folder(args.output)
        if args.dataset:
            require_registered(args.dataset)
        inputs = None if args.dataset else _inputs(args.input)
        if inputs is not None:
            _check_outputs(args.output, [n + (".mp4" if p.lower().endswith(VIDEO_EXT) else ".png")
                                         for p, n in zip(inputs, relative_names(inputs))])
        if args.config_file is None and not args.onnx:
            raise UserError("--config-file is needed (optional only with --onnx)")
        if args.config_file is None and args.opts:
            raise UserError("--opts needs --config-file (an --onnx model without a config has nothing to override)")
        cfg = load_config(args.config_file, args.opts) if args.config_file else None
    except (ConfigError, ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    ckpt = cfg.train.get("init_checkpoint") if cfg is not None and not args.onnx else None
    if ckpt and "://" not in ckpt and not os.path.isfile(ckpt):
        parser.exit(2, f"error: train.init_checkpoint {ckpt}: no such file\n")
    try:
        if cfg is not None and not args.onnx:
            resolve_device(cfg)
        if args.show_reconstruction and args.show_foreground:
            raise ValueError("--show-reconstruction and --show-foreground are for different models")
        pred = Predictor(cfg, visuals="reconstruction" if args.show_reconstruction else
                         "foreground" if args.show_foreground else None, slicing=slicing, onnx=args.onnx)
        if args.show_slices and pred.sliced is None:
            raise ValueError("--show-slices needs --slice (or a config whose model is sliced)")
        if args.guided is not None:
            if pred.sliced is None:
                raise ValueError("--guided needs --slice (or a config whose model is sliced)")
            from sod2.inference.guided import GuidedSlicing
            pred.sliced.guided = GuidedSlicing(threshold=args.guided, margin=args.guided_margin, size=args.guided_size)
    except (ValueError, RuntimeError) as e:  # no SR-TOD model, no CUDA, bad slicing
        parser.exit(2, f"error: {e}\n")

    def with_panels(vis, rgb):
        if args.show_slices:
            sel = pred.selection
            vis = draw_slice_windows(vis, pred.sliced.windows(*rgb.shape[:2]) if sel is None else sel.windows,
                                     scale=args.scale, copy=False, ran=None if sel is None else sel.ran)
        if args.show_foreground:
            panels = list(pred.foreground_panels(rgb))
        elif args.show_reconstruction:
            panels = [p for p in pred.reconstruction_panels() if p is not None]
        else:
            return vis
        scaled = [cv2.resize(p, (vis.shape[1], vis.shape[0]), interpolation=cv2.INTER_NEAREST) for p in panels]
        return side_by_side([vis] + scaled)

    written, skipped = [], []

    def _save_or_exit(path, vis):
        try:
            _save(path, vis)
        except UserError as e:
            parser.exit(2, f"error: {e} ({len(written)} drawing(s) written before)\n")

    def skip(e):
        logger.warning("skipped: %s", e)
        skipped.append(str(e))

    if args.dataset:
        meta = MetadataCatalog.get(args.dataset)
        try:
            records = DatasetCatalog.get(args.dataset)[: args.max_images]
        except DataFormatError as e:
            parser.exit(1, f"error: {e}\n")
        names = relative_names([r["file_name"] for r in records])
        try:
            _check_outputs(args.output, [n + ".png" for n in names])
        except UserError as e:
            parser.exit(2, f"error: {e}\n")
        for rec, name in zip(records, names):
            try:
                rgb = read_image(rec["file_name"], format="RGB")
            except DataFormatError as e:
                skip(e)
                continue
            vis = with_panels(draw_predictions(rgb, pred(rgb), meta, args.scale,
                                                       args.confidence_threshold, not args.no_labels), rgb)
            if args.with_ground_truth:
                vis = side_by_side([vis, draw_ground_truth(rgb, rec, meta, args.scale,
                                                           not args.no_labels)])
            out = os.path.join(args.output, name + ".png")
            _save_or_exit(out, vis)
            written.append(out)
    else:
        test_name = cfg.dataloader.test.dataset.get("names") if cfg is not None and "test" in cfg.dataloader else None
        meta = MetadataCatalog.get(test_name if isinstance(test_name, str) else "__unused")
        if cfg is None:  # an exported model without its config: the export's class names
            from detectron2.data.catalog import Metadata
            meta = Metadata(name=args.onnx, thing_classes=list(pred.model.metadata.class_names))
        elif not meta.get("thing_classes"):
            k = cfg.model.get("num_classes") or cfg.model.roi_heads.num_classes
            meta.thing_classes = [str(i) for i in range(k)]
        for path, name in zip(inputs, relative_names(inputs)):
            try:
                if path.lower().endswith(VIDEO_EXT):
                    written.append(run_video(pred, path, os.path.join(args.output, name + ".mp4"),
                                             meta, args))
                    continue
                rgb = read_image(path, format="RGB")
            except DataFormatError as e:
                skip(e)
                continue
            vis = with_panels(draw_predictions(rgb, pred(rgb), meta, args.scale,
                                                       args.confidence_threshold, not args.no_labels), rgb)
            out = os.path.join(args.output, name + ".png")
            _save_or_exit(out, vis)
            written.append(out)
    print(f"wrote {len(written)} visualization(s) to {args.output}")
    if skipped:
        sys.exit(f"error: {len(skipped)} input(s) could not be read and were skipped "
                 f"(first: {skipped[0]})")
    return written


if __name__ == "__main__":
    main()
