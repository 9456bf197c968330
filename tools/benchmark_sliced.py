#!/usr/bin/env python3
"""
Sliced inference: sod2's SlicedInference against SAHI's get_sliced_prediction (same model, same
large image), and AP of plain vs sliced inference on high-resolution tiny objects.

    python tools/benchmark_sliced.py [--config CFG] [--opts train.init_checkpoint=...] \\
        [--image-size 3000 4000] [--slice 800] [--overlap 0.2] [--batch-size 4] [--ap] [--output report.md]

Speed (unless --skip-speed): one generated ``H`` x ``W`` image of synthetic tiny objects; SAHI
with an adapter running the same model on each slice with the config's test augmentations,
sod2 with batch 1 and ``--batch-size`` slices per call, with and without the full-image pass;
median of --repeats runs after --warmup (:func:`sod2.utils.benchmark.time_callable`), whether
both give the same detections, and the model's forward alone on the prepared slices (the floor
of any slicing pipeline). AP (--ap): --ap-images generated --ap-size images, the whole image
resized to --ap-input, at full resolution, sliced, and sliced + full-image pass, AI-TOD buckets.
SAHI is a test dependency (``pip install sahi``). User errors: one line ``error: ...``, exit status 2.
"""
import argparse
import os
import sys
import tempfile

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, environment_line, ratio, run_report, time_callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _large_scene(H, W, seed=0):
    """(H, W, 3) uint8 RGB mosaic of synthetic tiny-object scenes (tiles of up to 512 px, as
    many objects per area as the 256 px training images) and the objects' XYWH boxes and classes."""
    import numpy as np

    from sod2.data.synthetic import SyntheticConfig, render_image

    rng = np.random.default_rng(seed)
    T = min(512, max(H, W, 64))
    f = (T / 256) ** 2  # the training images' object density
    cfg = SyntheticConfig(image_size=T, isolated=(int(6 * f), int(16 * f)), clusters=(int(1 * f), int(3 * f)),
                          ignore_region_prob=0.0)
    img = np.zeros((H, W, 3), np.uint8)
    objects = []
    for y in range(0, H, T):
        for x in range(0, W, T):
            tile, objs, _ = render_image(rng, cfg)
            h, w = min(T, H - y), min(T, W - x)
            img[y:y + h, x:x + w] = tile[:h, :w]
            objects += [([o["bbox"][0] + x, o["bbox"][1] + y, o["bbox"][2], o["bbox"][3]], o["category_id"])
                        for o in objs if o["bbox"][0] + o["bbox"][2] <= w and o["bbox"][1] + o["bbox"][3] <= h]
    return img, objects


def _sahi_adapter(model, augs, input_format, num_classes, device):
    """A SAHI DetectionModel that runs a sod2/Detectron2 model on one image at a time, with
    the config's test-time augmentations, converting detections as SAHI's own Detectron2
    adapter does (scores >= confidence threshold, shift and full shape)."""
    import numpy as np
    import torch
    from detectron2.data import transforms as T
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    class Sod2SahiModel(DetectionModel):
        def set_model(self, m, **kwargs):
            self.model = m

        def perform_inference(self, image):  # (H, W, 3) RGB, as SAHI slices
            img = image if input_format == "RGB" else image[:, :, ::-1]
            aug = T.AugInput(np.ascontiguousarray(img))
            T.AugmentationList(augs)(aug)
            t = torch.as_tensor(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
            with torch.no_grad():
                out = self.model([{"image": t, "height": image.shape[0], "width": image.shape[1]}])
            self._original_predictions = out[0]["instances"].to("cpu")

        def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=[[0, 0]],
                                                                     full_shape_list=None):
            inst = self._original_predictions
            # a single image passes flat [x, y] / [h, w] (SAHI's adapters accept both)
            if shift_amount_list is not None and isinstance(shift_amount_list[0], (int, float)):
                shift_amount_list = [shift_amount_list]
            if full_shape_list is not None and isinstance(full_shape_list[0], (int, float)):
                full_shape_list = [full_shape_list]
            shift = shift_amount_list[0] if shift_amount_list else [0, 0]
            full = None if full_shape_list is None else full_shape_list[0]
            keep = inst.scores >= self.confidence_threshold
            self._object_prediction_list_per_image = [[
                ObjectPrediction(bbox=b.tolist(), category_id=int(c), category_name=str(int(c)), score=float(s),
                                 shift_amount=shift, full_shape=full)
                for b, s, c in zip(inst.pred_boxes.tensor[keep], inst.scores[keep], inst.pred_classes[keep])]]

    return Sod2SahiModel(model=model, confidence_threshold=0.0, device=device,
                         category_mapping={str(i): str(i) for i in range(num_classes)})


def _build(args):
    """(cfg, model in eval mode, test augmentations, input format, number of classes)."""
    import torch
    from detectron2.config import instantiate

    from sod2.engine.checkpoint import load_for_inference
    from sod2.engine.lazy_train import load_config, resolve_device

    cfg = load_config(args.config, args.opts)
    resolve_device(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model).to(cfg.train.device).eval()
    if cfg.train.init_checkpoint:  # strict: weights of another model are refused
        load_for_inference(model, cfg.train.init_checkpoint)
    mapper = cfg.dataloader.test.mapper
    augs = [instantiate(a) for a in mapper.get("augmentations", [])]
    k = cfg.model.get("num_classes") or cfg.model.roi_heads.num_classes
    return cfg, model, augs, mapper.get("image_format", "BGR"), int(k)


def _bench_sliced_speed(args, cfg, model, augs, fmt, k):
    import numpy as np
    import torch
    from sahi.predict import get_sliced_prediction

    from sod2.inference import SlicedInference

    H, W = args.image_size
    rgb, _ = _large_scene(H, W)
    img = rgb if fmt == "RGB" else rgb[:, :, ::-1]
    inp = [{"image": torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1))), "height": H, "width": W}]
    merge = dict(merge=args.merge, match_metric=args.metric, match_threshold=args.threshold,
                 class_agnostic=args.class_agnostic)
    sahi_model = _sahi_adapter(model, augs, fmt, k, cfg.train.device)
    dev = cfg.train.device
    sync = torch.cuda.synchronize if dev.startswith("cuda") else None

    def timed(fn):
        """(median seconds of --repeats calls after --warmup, the last call's result)."""
        last = []
        t = time_callable(lambda: last.append(fn()), iters=args.repeats, warmup=args.warmup, synchronize=sync)
        return t.median, last[-1]

    def ours(full, bs):
        m = SlicedInference(model, slice_size=args.slice, overlap=args.overlap, batch_size=bs, full_image=full,
                            slice_augmentations=augs, **merge).eval()
        inst = m(inp)[0]["instances"].to("cpu")
        return np.c_[inst.pred_boxes.tensor.numpy(), inst.scores.numpy(), inst.pred_classes.numpy()]

    def theirs(full):
        res = get_sliced_prediction(rgb, sahi_model, slice_height=args.slice, slice_width=args.slice,
                                    overlap_height_ratio=args.overlap, overlap_width_ratio=args.overlap,
                                    perform_standard_pred=full, postprocess_type=args.merge.upper(),
                                    postprocess_match_metric=args.metric.upper(),
                                    postprocess_match_threshold=args.threshold,
                                    postprocess_class_agnostic=args.class_agnostic, verbose=0,
                                    force_postprocess_type=True)
        return np.array([[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in res.object_prediction_list],
                        np.float64).reshape(-1, 6)

    def same(a, b):
        """(same count, max |difference| of matched boxes in px) of two detection sets."""
        if len(a) != len(b):
            return False, float("nan")
        if not len(a):
            return True, 0.0
        key = lambda x: x[np.lexsort((x[:, 0], x[:, 1], np.round(x[:, 4], 4), x[:, 5]))]  # noqa: E731
        d = np.abs(key(a)[:, :4] - key(b)[:, :4]).max()
        return bool(d < 0.05), float(d)

    from sod2.inference import slice_windows

    n = len(slice_windows(H, W, args.slice, args.overlap))
    # the floor of any slicing pipeline with this model: its forward on the same prepared slices,
    # one at a time, with nothing around it (no cutting, no conversion, no merge)
    cutter = SlicedInference(model, slice_size=args.slice, overlap=args.overlap, slice_augmentations=augs)
    prepared = [{"image": cutter._prepare(inp[0]["image"], w), "height": int(w[3] - w[1]), "width": int(w[2] - w[0])}
                for w in cutter.windows(H, W)]

    def forward_only():
        with torch.no_grad():
            return [model([x]) for x in prepared]

    t_floor, _ = timed(forward_only)
    stages = stage_times(lambda: ours(False, 1))
    rows = []
    for full in (False, True):
        t_sahi, d_sahi = timed(lambda: theirs(full))
        t_one, d_one = timed(lambda: ours(full, 1))
        t_ours, d_ours = timed(lambda: ours(full, args.batch_size))
        ok, diff = same(d_ours, d_sahi)
        ok_one, diff_one = same(d_one, d_sahi)  # both batch sizes must give SAHI's detections
        ok, diff = ok and ok_one, max(diff, diff_one)
        rows.append((full, t_sahi, t_one, t_ours, len(d_sahi), len(d_ours), ok, diff))
    table = ResultTable(
        ["full-image pass", "SAHI get_sliced_prediction (s)", "sod2, batch 1 (s)", f"sod2, batch {args.batch_size} (s)",
         "SAHI / sod2 batch 1", f"SAHI / sod2 batch {args.batch_size}", "detections SAHI / sod2",
         "same detections (max box diff px)"],
        header=f"{environment_line()}\nDevice: {dev}; one {W}x{H} image (synthetic tiny objects), {args.slice} px "
               f"slices, overlap {args.overlap} ({n} slices), merge {args.merge.upper()}/{args.metric.upper()} "
               f"{args.threshold} {'class-agnostic' if args.class_agnostic else 'per class'}; model "
               f"{os.path.basename(args.config)}; median of {args.repeats} runs after {args.warmup} warm-up.",
        notes=[f"Full-image pass: +{rows[1][3] - rows[0][3]:.2f} s for sod2 (batch {args.batch_size}), "
               f"+{rows[1][1] - rows[0][1]:.2f} s for SAHI.", "",
               f"The model's forward alone on the same {n} prepared slices (batch 1, nothing around it): "
               f"{t_floor:.2f} s, the floor of any slicing pipeline with this model on this device; the "
               f"highest SAHI / pipeline ratio it allows without a full-image pass is "
               f"{rows[0][1] / t_floor:.2f}x (sod2 batch 1 reaches {rows[0][1] / rows[0][2]:.2f}x); sod2 batch 1 "
               f"takes {rows[0][2] / t_floor:.3f}x the floor.", "",
               "Where sod2 batch 1 (no full-image pass) spends its time, one run under torch.profiler "
               "(its record_function stages; the profiler itself adds a little to each): " + ", ".join(
                   f"{k} {v:.3f} s" for k, v in stages.items()) + "."])
    for full, ts, t1, tb, ns, no, ok, diff in rows:
        table.add_row(["yes" if full else "no", f"{ts:.2f}", f"{t1:.2f}", f"{tb:.2f}", ratio(ts, t1), ratio(ts, tb),
                       f"{ns} / {no}", f"{'yes' if ok else 'NO'} ({diff:.1e})"])
    return table


STAGES = ("prepare", "forward", "convert", "merge")


def stage_times(fn):
    """Seconds per stage of one call of ``fn`` (a SlicedInference run) under torch.profiler:
    ``{"prepare", "forward", "convert", "merge"}`` from SlicedInference's ``sod2.sliced.<stage>``
    labels, ``"other"`` the rest of the wall time and ``"total"`` the wall time."""
    import time

    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        total = time.perf_counter() - t0
    by_key = {e.key: e.cpu_time_total / 1e6 for e in prof.key_averages()}
    out = {k: by_key.get(f"sod2.sliced.{k}", 0.0) for k in STAGES}
    out["other"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return out


def _bench_sliced_ap(args, cfg, model, augs, fmt, k):
    """AP by bucket on generated high-resolution images with tiny objects: the whole image
    resized to the model's input, the whole image at full resolution, sliced, sliced + full."""
    import cv2
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.data import transforms as T
    from detectron2.evaluation import inference_on_dataset
    from detectron2.structures import BoxMode

    from sod2.data import SODDatasetMapper
    from sod2.data.synthetic import SYNTHETIC_CLASSES, SyntheticConfig, render_image
    from sod2.evaluation.evaluator import ScaleBucketEvaluator
    from sod2.inference import SlicedInference

    S, n = args.ap_size, args.ap_images
    f = (S / 256) ** 2  # as many objects per area as the 256 px training images
    gen = SyntheticConfig(image_size=S, isolated=(int(6 * f), int(16 * f)), clusters=(int(1 * f), int(3 * f)),
                          ignore_region_prob=0.0)
    rng = np.random.default_rng(args.ap_seed)
    tmp = tempfile.mkdtemp(prefix="sod2_sliced_ap_")
    records = []
    for i in range(n):
        img, objs, _ = render_image(rng, gen)
        path = os.path.join(tmp, f"{i:03d}.png")
        cv2.imwrite(path, img[:, :, ::-1])
        records.append({"file_name": path, "image_id": i + 1, "height": S, "width": S, "annotations": [
            {"bbox": o["bbox"], "bbox_mode": BoxMode.XYWH_ABS, "category_id": o["category_id"], "iscrowd": 0,
             "ignore": 0} for o in objs]})
    name = "_sod2_sliced_ap_benchmark"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=list(SYNTHETIC_CLASSES), eval_protocol="aitod")

    def run(m, mapper_augs):
        loader = build_detection_test_loader(DatasetCatalog.get(name), mapper=SODDatasetMapper(
            is_train=False, augmentations=mapper_augs, image_format=fmt), num_workers=0)
        res = []
        t = time_callable(lambda: res.append(inference_on_dataset(
            m, loader, ScaleBucketEvaluator(name, distributed=False))["bbox"]), iters=1)
        return res[0], t.median / n

    resize = [T.ResizeShortestEdge(args.ap_input, args.ap_input)]
    sliced = dict(slice_size=args.ap_input, overlap=args.overlap, batch_size=args.batch_size,
                  slice_augmentations=augs, merge=args.merge, match_metric=args.metric,
                  match_threshold=args.threshold, class_agnostic=args.class_agnostic)
    settings = [(f"whole image resized to {args.ap_input} px", model, resize),
                (f"whole image at {S} px", model, augs),
                (f"sliced, {args.ap_input} px slices, overlap {args.overlap}", SlicedInference(model, **sliced), []),
                ("sliced + full-image pass", SlicedInference(model, full_image=True, **dict(
                    sliced, slice_augmentations=resize)), [])]
    table = ResultTable(
        ["inference", "AP", "AP50", "AP_verytiny", "AP_tiny", "AP_small", "AP_medium", "s / image"],
        header=f"{n} generated {S}x{S} image(s), {sum(len(r['annotations']) for r in records)} objects "
               f"(synthetic classes, 4-40 px), AI-TOD buckets; model {os.path.basename(args.config)}, the same "
               f"weights for every row; merge {args.merge.upper()}/{args.metric.upper()} {args.threshold}.",
        notes=["(The full-image pass of the last row sees the image resized to the model's input, as the first row.)"])
    for label, m, mapper_augs in settings:
        r, t = run(m, mapper_augs)
        cell = lambda key: "-" if r.get(key) is None or r[key] != r[key] else f"{r[key]:.1f}"  # noqa: E731
        table.add_row([label, cell("AP"), cell("AP50"), cell("AP_verytiny"), cell("AP_tiny"), cell("AP_small"),
                       cell("AP_medium"), f"{t:.2f}"])
    return table


class _SahiModel:
    """SAHI's ``get_sliced_prediction`` as a Detectron2 model (``model(list of dicts) -> list of
    {"instances"}``) over the full-resolution image, for evaluating it like sod2."""

    def __init__(self, sahi_model, fmt, args, full):
        self.sahi_model, self.fmt, self.args, self.full = sahi_model, fmt, args, full

    def __call__(self, batched):
        import numpy as np
        import torch
        from detectron2.structures import Boxes, Instances
        from sahi.predict import get_sliced_prediction

        out = []
        for d in batched:
            img = d["image"].permute(1, 2, 0).numpy()
            rgb = np.ascontiguousarray(img if self.fmt == "RGB" else img[:, :, ::-1])
            a = self.args
            res = get_sliced_prediction(rgb, self.sahi_model, slice_height=a.slice, slice_width=a.slice,
                                        overlap_height_ratio=a.overlap, overlap_width_ratio=a.overlap,
                                        perform_standard_pred=self.full, postprocess_type=a.merge.upper(),
                                        postprocess_match_metric=a.metric.upper(),
                                        postprocess_match_threshold=a.threshold,
                                        postprocess_class_agnostic=a.class_agnostic, verbose=0,
                                        force_postprocess_type=True)
            det = np.array([[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in res.object_prediction_list],
                           np.float64).reshape(-1, 6)
            h, w = rgb.shape[:2]
            inst = Instances((d.get("height", h), d.get("width", w)))
            scale = torch.tensor([d.get("width", w) / w, d.get("height", h) / h] * 2)
            inst.pred_boxes = Boxes(torch.as_tensor(det[:, :4], dtype=torch.float32) * scale)
            inst.scores = torch.as_tensor(det[:, 4], dtype=torch.float32)
            inst.pred_classes = torch.as_tensor(det[:, 5], dtype=torch.int64)
            out.append({"instances": inst})
        return out

    def eval(self):
        return self


def _bench_guided(args, cfg, model, augs, fmt, k):
    """Time and AP on a registered large-image dataset (``--guided-eval``): the whole image at
    the model's test size, SAHI, sod2 exhaustive (both with the full-image pass) and sod2
    guided at each ``--guided-thresholds``, same model, same process, one image at a time."""
    import time

    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
    from detectron2.evaluation import inference_on_dataset

    from sod2.data import SODDatasetMapper
    from sod2.evaluation.evaluator import ScaleBucketEvaluator
    from sod2.inference import SlicedInference
    from sod2.inference.guided import GuidedSlicing

    name = args.guided_eval
    if name not in DatasetCatalog.list():
        raise UserError(f"--guided-eval: no registered dataset {name!r} (e.g. sod2_large_synthetic_val, "
                        "sod2_hituav_mosaic_val)")
    dicts = DatasetCatalog.get(name)
    if args.guided_images:
        dicts = dicts[:args.guided_images]
    subset = f"_sod2_guided_eval_{name}"
    if subset in DatasetCatalog.list():
        DatasetCatalog.remove(subset)
        MetadataCatalog.remove(subset)
    DatasetCatalog.register(subset, lambda: dicts)
    MetadataCatalog.get(subset).set(**{k2: v for k2, v in MetadataCatalog.get(name).as_dict().items() if k2 != "name"})
    merge = dict(merge=args.merge, match_metric=args.metric, match_threshold=args.threshold,
                 class_agnostic=args.class_agnostic)
    sliced = dict(slice_size=args.slice, overlap=args.overlap, batch_size=1, slice_augmentations=augs, **merge)
    proto = MetadataCatalog.get(name).get("eval_protocol", "aitod")

    def evaluate(m, mapper_augs, counter=None):
        loader = build_detection_test_loader(dicts, mapper=SODDatasetMapper(
            is_train=False, augmentations=mapper_augs, image_format=fmt), num_workers=0)
        t0 = time.perf_counter()
        res = inference_on_dataset(m, loader, ScaleBucketEvaluator(subset, distributed=False))["bbox"]
        return res, (time.perf_counter() - t0) / len(dicts)

    class Counting(torch.nn.Module):
        """The guided wrapper, counting the slices it runs (from its per-image "slicing")."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.run, self.total = inner, 0, 0

        def forward(self, batched):
            out = self.inner(batched)
            for o in out:
                sel = o.get("slicing")
                if sel is not None:
                    self.run += sel.num_run
                    self.total += len(sel.windows)
            return out

    n_slices = []
    from sod2.inference import slice_windows
    for d in dicts:
        n_slices.append(len(slice_windows(d["height"], d["width"], args.slice, args.overlap)))
    mean_slices = float(np.mean(n_slices))
    rows = []
    rows.append(("whole image (the model's test size)", *evaluate(model, augs), "0"))
    sahi = _sahi_adapter(model, augs, fmt, k, cfg.train.device)
    for full in (False, True):
        rows.append((f"SAHI{' (+ full-image pass)' if full else ''}", *evaluate(_SahiModel(sahi, fmt, args, full), []),
                     f"{mean_slices:.1f}"))
    for full in (False, True):
        rows.append((f"sod2 exhaustive{' (+ full-image pass)' if full else ''}",
                     *evaluate(SlicedInference(model, full_image=full, **sliced).eval(), []), f"{mean_slices:.1f}"))
    for thr in args.guided_thresholds:
        g = GuidedSlicing(threshold=thr, margin=args.guided_margin, source=args.guided_source,
                          size=args.guided_size or None)
        c = Counting(SlicedInference(model, guided=g, **sliced).eval())
        r, t = evaluate(c, [])
        rows.append((f"sod2 guided, threshold {thr:g}", r, t, f"{c.run / len(dicts):.1f}"))
    sahi_t = rows[1][2]  # SAHI without the full-image pass: the plain baseline
    ar = [k2 for k2 in rows[0][1] if k2.startswith("AR@")]
    ar = max(ar, key=lambda k2: int(k2[3:])) if ar else "AR"  # recall at the protocol's largest max-dets
    keys = ["AP", "AP50", ar] + [k2 for k2 in rows[0][1] if k2.startswith(("AP_", "AR_"))]
    table = ResultTable(
        ["inference", *keys, "s / image", "SAHI (no full pass) / this", "slices run / image"],
        header=f"{environment_line()}\n{len(dicts)} images of {name} ({proto} buckets); model "
               f"{os.path.basename(args.config)} {' '.join(args.opts)}; {args.slice} px slices, overlap "
               f"{args.overlap} ({mean_slices:.1f} per image), merge {args.merge.upper()}/{args.metric.upper()} "
               f"{args.threshold}; guided margin {args.guided_margin} px, source {args.guided_source}, full-image pass "
               f"{'at ' + str(args.guided_size) + ' px (longest side)' if args.guided_size else 'through the test resize'}; one image "
               "at a time, batch 1, same process.")
    for label, r, t, ran in rows:
        cell = lambda key: "-" if r.get(key) is None or r[key] != r[key] else f"{r[key]:.1f}"  # noqa: E731
        table.add_row([label, *[cell(k2) for k2 in keys], f"{t:.2f}", ratio(sahi_t, t), ran])
    return table


def bench_sliced(args):
    """The speed table (unless --skip-speed) and the AP table (with --ap)."""
    if args.slice <= 0 or not 0 <= args.overlap < 1:
        raise UserError(f"--slice must be positive and --overlap in [0, 1), got {args.slice}, {args.overlap}")
    if args.repeats < 1 or args.warmup < 0:
        raise UserError(f"--repeats must be at least 1 and --warmup 0 or more, got {args.repeats}, {args.warmup}")
    if not os.path.isfile(args.config):
        raise UserError(f"--config: {args.config} does not exist")
    built = _build(args)
    tables = []
    if args.guided_eval:
        return [_bench_guided(args, *built)]
    if not args.skip_speed:
        tables.append(_bench_sliced_speed(args, *built))
    if args.ap:
        tables.append(_bench_sliced_ap(args, *built))
    return tables


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "baselines", "faster_rcnn_R18s_fpn_synthetic.py"))
    p.add_argument("--opts", nargs="*", default=[], help="config overrides (train.init_checkpoint=...)")
    p.add_argument("--image-size", type=int, nargs=2, default=[3000, 4000], metavar=("H", "W"))
    p.add_argument("--slice", type=int, default=800)
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--batch-size", type=int, default=4, help="sod2's slices per model call")
    p.add_argument("--merge", choices=["nms", "greedynmm"], default="greedynmm")
    p.add_argument("--metric", choices=["iou", "ios"], default="ios")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--class-agnostic", action="store_true")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--skip-speed", action="store_true", help="only the AP comparison")
    p.add_argument("--ap", action="store_true", help="also: AP plain vs sliced on generated images")
    p.add_argument("--ap-images", type=int, default=10)
    p.add_argument("--ap-size", type=int, default=1024, help="side of the generated images")
    p.add_argument("--ap-input", type=int, default=256,
                   help="the model's input size: plain inference resizes to it, slices have it")
    p.add_argument("--ap-seed", type=int, default=11)
    p.add_argument("--guided-eval", metavar="DATASET",
                   help="only: time and AP of whole-image, SAHI, sod2 exhaustive and sod2 guided inference on a "
                        "registered large-image dataset (sod2_large_synthetic_val, sod2_hituav_mosaic_val)")
    p.add_argument("--guided-thresholds", type=float, nargs="+", default=[0.01, 0.05, 0.2])
    p.add_argument("--guided-margin", type=int, default=32)
    p.add_argument("--guided-source", choices=["auto", "model", "detections"], default="auto")
    p.add_argument("--guided-images", type=int, default=0, help="only the first N images (0: all)")
    p.add_argument("--guided-size", type=int, default=0,
                   help="longest side of guided slicing's full-image pass (0: the model's test resize)")
    p.add_argument("--output", help="also write the Markdown report here")
    return p


def main(argv=None) -> int:
    return run_report(bench_sliced, get_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
