#!/usr/bin/env python
"""
Measure sod2 against a baseline in the same run and report ratios (Markdown).

    # two models on the same data: train-step time, inference latency, peak memory
    python tools/benchmark.py models --config-a configs/baselines/A.py --config-b configs/cfinet/B.py \
        [--opts-a k=v ...] [--opts-b k=v ...] [--iters 10] [--warmup 3] [--image-size 800 800]

    # the evaluator (tools/evaluate_json.py, whole process) against a plain pycocotools script
    python tools/benchmark.py evaluator [--images 200 --objects 50000 --detections 100000]

    # sliced inference: sod2's SlicedInference vs SAHI's get_sliced_prediction (same model,
    # same large image), and AP of plain vs sliced inference on high-resolution tiny objects
    python tools/benchmark.py sliced [--config CFG] [--opts train.init_checkpoint=...] \
        [--image-size 3000 4000] [--slice 800] [--overlap 0.2] [--batch-size 4] [--ap]

    # same weights, two inference settings: are the detections the same?
    python tools/benchmark.py consistency --config CFG --opts-b model.backbone.sampled_inference=False \
        --dataset hituav_val --max-images 20 [--opts-a train.init_checkpoint=...]

Each model is measured in its own fresh process, one after the other, on the same batches
(built from config A's data loaders, or random images of --image-size with random boxes),
so timings and peak memory are comparable. Optimizer steps run with learning rate 0 (the
same work, but untrained models cannot diverge during the measurement). Times are medians over --iters steps after
--warmup steps. Peak memory is the process's peak resident set (CPU) or the peak CUDA
allocation (GPU).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- models
def _worker(args) -> None:
    """Measure one config; print a JSON line."""
    import resource

    import numpy as np
    import torch

    sys.path.insert(0, ROOT)
    import sod2  # noqa: F401
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from sod2.engine.lazy_train import resolve_device

    torch.manual_seed(0)
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config), args.opts)
    dev = resolve_device(cfg)
    data_cfg = LazyConfig.apply_overrides(LazyConfig.load(args.data_config), args.data_opts)
    model = instantiate(cfg.model).to(dev)
    cfg.optimizer.params.model = model
    # the optimizer does its full step with lr 0: models without their pretrained weights
    # would otherwise diverge within a few steps and stop the measurement
    cfg.optimizer.lr = 0.0
    optim = instantiate(cfg.optimizer)

    n = args.warmup + args.iters
    if args.image_size:
        H, W = args.image_size
        rng = np.random.default_rng(0)

        def fake(i):
            k = 30
            xy = rng.uniform(0, [W - 40, H - 40], (k, 2))
            wh = rng.uniform(4, 40, (k, 2))
            inst = Instances((H, W), gt_boxes=Boxes(torch.tensor(np.c_[xy, xy + wh], dtype=torch.float32)),
                             gt_classes=torch.tensor(rng.integers(0, 3, k)))
            return {"image": torch.randint(0, 256, (3, H, W), dtype=torch.uint8), "height": H,
                    "width": W, "instances": inst, "image_id": i}

        train_batches = [[fake(2 * i), fake(2 * i + 1)] for i in range(n)]
        test_inputs = [fake(i) for i in range(n)]
    else:
        data_cfg.dataloader.train.num_workers = 0
        loader = iter(instantiate(data_cfg.dataloader.train))
        train_batches = [next(loader) for _ in range(min(n, args.distinct_batches))]
        test_loader = instantiate(data_cfg.dataloader.test)
        test_inputs = []
        for batch in test_loader:
            test_inputs += batch
            if len(test_inputs) >= min(n, args.distinct_batches):
                break

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"config": args.config}
    if args.mode in ("train", "both"):
        model.train()
        times = []
        with EventStorage(0):
            for i in range(n):
                batch = train_batches[i % len(train_batches)]
                sync()
                t = time.perf_counter()
                losses = model(batch)
                loss = sum(losses.values())
                optim.zero_grad()
                loss.backward()
                optim.step()
                sync()
                times.append(time.perf_counter() - t)
        out["train_step_s"] = statistics.median(times[args.warmup:])
        out["train_batch"] = len(train_batches[0])
    if args.mode in ("test", "both"):
        model.eval()
        times = []
        with torch.no_grad():
            for i in range(n):
                inp = test_inputs[i % len(test_inputs)]
                inp = {k: v for k, v in inp.items() if k != "instances"}
                sync()
                t = time.perf_counter()
                model([inp])
                sync()
                times.append(time.perf_counter() - t)
        out["latency_s"] = statistics.median(times[args.warmup:])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_before_mb"] = rss0 / 1024
    if dev.startswith("cuda"):
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    out["device"] = dev
    print("BENCH " + json.dumps(out), flush=True)


def _run_worker(config, opts, data_config, data_opts, args, mode):
    cmd = [sys.executable, os.path.abspath(__file__), "_worker", "--config", config,
           "--data-config", data_config, "--mode", mode, "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--distinct-batches", str(args.distinct_batches)]
    if args.image_size:
        cmd += ["--image-size", *map(str, args.image_size)]
    cmd += ["--opts", *opts, "--data-opts", *data_opts]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise RuntimeError(f"benchmark worker failed for {config}:\n{proc.stderr[-3000:]}")


def _ratio(b, a):
    return f"{b / a:.2f}x" if a and b is not None else "-"


def bench_models(args) -> str:
    rows = []
    results = {}
    modes = ("test",) if args.inference_only else ("train", "test")
    for mode in modes:
        # peak memory is per process: measure training and inference separately
        a = _run_worker(args.config_a, args.opts_a, args.config_a, args.opts_a, args, mode)
        b = _run_worker(args.config_b, args.opts_b, args.config_a, args.opts_a, args, mode)
        results[mode] = (a, b)
    ia, ib = results["test"]
    mem = "peak_cuda_mb" if "peak_cuda_mb" in ia else "peak_rss_mb"
    if "train" in results:
        ta, tb = results["train"]
        rows.append(("train step (s, batch %d)" % ta["train_batch"], ta["train_step_s"], tb["train_step_s"]))
    rows.append(("inference latency (s/image)", ia["latency_s"], ib["latency_s"]))
    if "train" in results:
        rows.append((f"train {mem.replace('_', ' ')}", ta[mem], tb[mem]))
    rows.append((f"inference {mem.replace('_', ' ')}", ia[mem], ib[mem]))
    size = "x".join(map(str, args.image_size)) if args.image_size else "config A's data"
    lines = [f"Device: {ia['device']}; inputs: {size}; median of {args.iters} steps after "
             f"{args.warmup} warm-up steps; each model in a fresh process.", "",
             f"| metric | A: {os.path.basename(args.config_a)} | B: {os.path.basename(args.config_b)} | B / A |",
             "|---|---|---|---|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {a:.4g} | {b:.4g} | {_ratio(b, a)} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------- evaluator
PYCOCO_SCRIPT = r'''
import json, sys
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
E = COCOeval(gt, dt, "bbox")
E.params.maxDets = [100, 300, 1500]
E.params.areaRng = [[0, 1e10], [0, 64], [64, 256], [256, 1024], [1024, 1e10]]
E.params.areaRngLbl = ["all", "verytiny", "tiny", "small", "medium"]
E.evaluate(); E.accumulate(); E.summarize()
p = E.eval["precision"]
def m(x): x = x[x > -1]; return float(x.mean()) if x.size else None
out = {"AP": m(p[:, :, :, 0, 2]), "AP50": m(p[0, :, :, 0, 2])}
for a, n in enumerate(E.params.areaRngLbl[1:], 1):
    out["AP_" + n] = m(p[:, :, :, a, 2])
json.dump(out, open(sys.argv[3], "w"))
'''


def make_dense_set(folder, n_img, n_obj, n_det, n_cat=8, seed=0):
    """A dense tiny-object set (most objects under 32 px) and jittered detections."""
    import numpy as np

    rng = np.random.default_rng(seed)
    W = H = 800
    img_of = rng.integers(1, n_img + 1, n_obj)
    s = np.exp(rng.uniform(np.log(2), np.log(64), n_obj))
    ar = np.exp(rng.uniform(-0.5, 0.5, n_obj))
    w, h = s * ar, s / ar
    x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
    cat = rng.integers(1, n_cat + 1, n_obj)
    gt = {"images": [{"id": i + 1, "file_name": f"{i:05d}.jpg", "width": W, "height": H} for i in range(n_img)],
          "annotations": [{"id": k + 1, "image_id": int(img_of[k]), "category_id": int(cat[k]),
                           "bbox": [float(x[k]), float(y[k]), float(w[k]), float(h[k])],
                           "area": float(w[k] * h[k]), "iscrowd": int(rng.random() < 0.01)}
                          for k in range(n_obj)],
          "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cat + 1)]}
    n_tp = int(n_det * 0.6)
    src = rng.integers(0, n_obj, n_tp)
    j = rng.normal(0, 0.15, (n_tp, 4))
    n_fp = n_det - n_tp
    fs = np.exp(rng.uniform(np.log(2), np.log(64), n_fp))
    bx = np.concatenate([x[src] + j[:, 0] * w[src], rng.uniform(0, W - fs)])
    by = np.concatenate([y[src] + j[:, 1] * h[src], rng.uniform(0, H - fs)])
    bw = np.concatenate([w[src] * np.exp(j[:, 2]), fs])
    bh = np.concatenate([h[src] * np.exp(j[:, 3]), fs])
    bc = np.concatenate([np.where(rng.random(n_tp) < 0.9, cat[src], rng.integers(1, n_cat + 1, n_tp)),
                         rng.integers(1, n_cat + 1, n_fp)])
    bi = np.concatenate([img_of[src], rng.integers(1, n_img + 1, n_fp)])
    sc = np.round(np.concatenate([rng.beta(5, 2, n_tp), rng.beta(2, 5, n_fp)]), 3)
    dts = [{"image_id": int(bi[k]), "category_id": int(bc[k]), "score": float(sc[k]),
            "bbox": [float(bx[k]), float(by[k]), float(bw[k]), float(bh[k])]} for k in rng.permutation(n_det)]
    gt_path, dt_path = os.path.join(folder, "gt.json"), os.path.join(folder, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dts, f)
    return gt_path, dt_path


def _timed(cmd):
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def bench_evaluator(args) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        gt, dt = make_dense_set(tmp, args.images, args.objects, args.detections)
        ours_json, ref_json = os.path.join(tmp, "ours.json"), os.path.join(tmp, "ref.json")
        script = os.path.join(tmp, "plain_pycocotools.py")
        with open(script, "w") as f:
            f.write(PYCOCO_SCRIPT)
        ours = [sys.executable, os.path.join(ROOT, "tools", "evaluate_json.py"), "--gt", gt, "--dt", dt,
                "--protocol", "aitod", "--quiet", "--output", ours_json]
        ref = [sys.executable, script, gt, dt, ref_json]
        t_ours = min(_timed(ours) for _ in range(args.repeats))
        t_ref = min(_timed(ref) for _ in range(max(1, args.repeats_reference)))
        with open(ours_json) as f:
            m_ours = json.load(f)["metrics"]
        with open(ref_json) as f:
            m_ref = json.load(f)
    diffs = [abs(m_ours[k] / 100 - v) for k, v in m_ref.items() if v is not None]
    same = max(diffs) < 1e-9
    return "\n".join([
        f"Dense set: {args.images} images, {args.objects} objects, {args.detections} detections, "
        "8 classes, AI-TOD buckets, maxDets 100/300/1500; whole processes (start-up, json "
        "loading, evaluation).", "",
        "| evaluator | wall time (s) | speed-up |", "|---|---|---|",
        f"| plain pycocotools script | {t_ref:.2f} | 1.00x |",
        f"| tools/evaluate_json.py --protocol aitod | {t_ours:.2f} | {t_ref / t_ours:.1f}x |", "",
        f"Identical numbers (max |difference| {max(diffs):.1e} as a fraction): {'yes' if same else 'NO'}",
    ])


def bench_consistency(args) -> str:
    """Same weights, two inference settings (e.g. SR-TOD's sampled vs full reconstruction):
    match the detections of B to A per image (same class, IoU >= --iou) and report the
    unmatched ones and the largest score difference."""
    import numpy as np
    import torch

    sys.path.insert(0, ROOT)
    import sod2  # noqa: F401
    from sod2.engine.checkpoint import load_for_inference
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog
    from detectron2.structures import pairwise_iou

    from sod2.data.io import read_image
    from sod2.engine.lazy_train import resolve_device

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
    from detectron2.data import transforms as T

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
    return "\n".join([
        f"Dataset {args.dataset}, first {args.max_images} images, detections with score >= {args.score}.",
        "", "| A | B | detections A | detections B | A without a match in B (IoU >= "
        f"{args.iou}, same class) | max score difference | max box coordinate difference (px) |",
        "|---|---|---|---|---|---|---|",
        f"| {' '.join(args.opts_a) or 'config'} | {' '.join(args.opts_b)} | {n_a} | {n_b} | {unmatched} | "
        f"{max_ds:.2e} | {max_box:.2e} |"])


# ----------------------------------------------------------------------------- sliced
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

    sys.path.insert(0, ROOT)
    import sod2  # noqa: F401
    from sod2.engine.checkpoint import load_for_inference
    from detectron2.config import instantiate

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

    def sync():
        if dev.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(fn):
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.repeats):
            sync()
            t = time.perf_counter()
            out = fn()
            sync()
            times.append(time.perf_counter() - t)
        return statistics.median(times), out

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
    rows = []
    for full in (False, True):
        t_sahi, d_sahi = timed(lambda: theirs(full))
        t_one, d_one = timed(lambda: ours(full, 1))
        t_ours, d_ours = timed(lambda: ours(full, args.batch_size))
        ok, diff = same(d_ours, d_sahi)
        ok_one, diff_one = same(d_one, d_sahi)  # both batch sizes must give SAHI's detections
        ok, diff = ok and ok_one, max(diff, diff_one)
        rows.append((full, t_sahi, t_one, t_ours, len(d_sahi), len(d_ours), ok, diff))
    lines = [f"Device: {dev}; one {W}x{H} image (synthetic tiny objects), {args.slice} px slices, overlap "
             f"{args.overlap} ({n} slices), merge {args.merge.upper()}/{args.metric.upper()} {args.threshold} "
             f"{'class-agnostic' if args.class_agnostic else 'per class'}; model {os.path.basename(args.config)}; "
             f"median of {args.repeats} runs after {args.warmup} warm-up.", "",
             "| full-image pass | SAHI get_sliced_prediction (s) | sod2, batch 1 (s) | sod2, batch "
             f"{args.batch_size} (s) | SAHI / sod2 batch 1 | SAHI / sod2 batch {args.batch_size} | detections SAHI / "
             "sod2 | same detections (max box diff px) |",
             "|---|---|---|---|---|---|---|---|"]
    for full, ts, t1, tb, ns, no, ok, diff in rows:
        lines.append(f"| {'yes' if full else 'no'} | {ts:.2f} | {t1:.2f} | {tb:.2f} | {ts / t1:.2f}x | {ts / tb:.2f}x | "
                     f"{ns} / {no} | "
                     f"{'yes' if ok else 'NO'} ({diff:.1e}) |")
    lines += ["", f"Full-image pass: +{rows[1][3] - rows[0][3]:.2f} s for sod2 (batch {args.batch_size}), "
                  f"+{rows[1][1] - rows[0][1]:.2f} s for SAHI.",
              "", f"The model's forward alone on the same {n} prepared slices (batch 1, nothing around it): "
                  f"{t_floor:.2f} s, the floor of any slicing pipeline with this model on this device; the "
                  f"highest SAHI / pipeline ratio it allows without a full-image pass is "
                  f"{rows[0][1] / t_floor:.2f}x (sod2 batch 1 reaches {rows[0][1] / rows[0][2]:.2f}x)."]
    return "\n".join(lines)


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
        t = time.perf_counter()
        res = inference_on_dataset(m, loader, ScaleBucketEvaluator(name, distributed=False))["bbox"]
        return res, (time.perf_counter() - t) / n

    resize = [T.ResizeShortestEdge(args.ap_input, args.ap_input)]
    sliced = dict(slice_size=args.ap_input, overlap=args.overlap, batch_size=args.batch_size,
                  slice_augmentations=augs, merge=args.merge, match_metric=args.metric,
                  match_threshold=args.threshold, class_agnostic=args.class_agnostic)
    settings = [(f"whole image resized to {args.ap_input} px", model, resize),
                (f"whole image at {S} px", model, augs),
                (f"sliced, {args.ap_input} px slices, overlap {args.overlap}", SlicedInference(model, **sliced), []),
                ("sliced + full-image pass", SlicedInference(model, full_image=True, **dict(
                    sliced, slice_augmentations=resize)), [])]
    lines = [f"{n} generated {S}x{S} image(s), {sum(len(r['annotations']) for r in records)} objects "
             f"(synthetic classes, 4-40 px), AI-TOD buckets; model {os.path.basename(args.config)}, the same "
             "weights for every row; merge " f"{args.merge.upper()}/{args.metric.upper()} {args.threshold}.", "",
             "| inference | AP | AP50 | AP_verytiny | AP_tiny | AP_small | AP_medium | s / image |",
             "|---|---|---|---|---|---|---|---|"]
    for label, m, mapper_augs in settings:
        r, t = run(m, mapper_augs)
        cell = lambda key: "-" if r.get(key) is None or r[key] != r[key] else f"{r[key]:.1f}"  # noqa: E731
        lines.append(f"| {label} | {cell('AP')} | {cell('AP50')} | {cell('AP_verytiny')} | {cell('AP_tiny')} | "
                     f"{cell('AP_small')} | {cell('AP_medium')} | {t:.2f} |")
    lines.append("")
    lines.append("(The full-image pass of the last row sees the image resized to the model's input, "
                 "as the first row.)")
    return "\n".join(lines)


def bench_sliced(args) -> str:
    if args.slice <= 0 or not 0 <= args.overlap < 1:
        raise SystemExit(f"error: --slice must be positive and --overlap in [0, 1), got {args.slice}, {args.overlap}")
    built = _build(args)
    parts = []
    if not args.skip_speed:
        parts.append(_bench_sliced_speed(args, *built))
    if args.ap:
        parts.append(_bench_sliced_ap(args, *built))
    return "\n\n".join(parts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("models", help="compare two configs")
    m.add_argument("--config-a", required=True, help="the baseline")
    m.add_argument("--config-b", required=True)
    m.add_argument("--opts-a", nargs="*", default=[])
    m.add_argument("--opts-b", nargs="*", default=[])
    m.add_argument("--iters", type=int, default=10)
    m.add_argument("--warmup", type=int, default=3)
    m.add_argument("--distinct-batches", type=int, default=4)
    m.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="random inputs of this size instead of config A's data")
    m.add_argument("--inference-only", action="store_true", help="skip the training measurement")
    c = sub.add_parser("consistency", help="same weights, two inference settings: same detections?")
    c.add_argument("--config", required=True)
    c.add_argument("--opts-a", nargs="*", default=[])
    c.add_argument("--opts-b", nargs="*", default=[])
    c.add_argument("--dataset", required=True)
    c.add_argument("--max-images", type=int, default=20)
    c.add_argument("--score", type=float, default=0.05)
    c.add_argument("--iou", type=float, default=0.99)
    e = sub.add_parser("evaluator", help="evaluate_json.py vs plain pycocotools")
    e.add_argument("--images", type=int, default=200)
    e.add_argument("--objects", type=int, default=50000)
    e.add_argument("--detections", type=int, default=100000)
    e.add_argument("--repeats", type=int, default=3)
    e.add_argument("--repeats-reference", type=int, default=1)
    sl = sub.add_parser("sliced", help="sliced inference: sod2 vs SAHI speed, AP plain vs sliced")
    sl.add_argument("--config", default=os.path.join(ROOT, "configs", "baselines", "faster_rcnn_R18s_fpn_synthetic.py"))
    sl.add_argument("--opts", nargs="*", default=[], help="config overrides (train.init_checkpoint=...)")
    sl.add_argument("--image-size", type=int, nargs=2, default=[3000, 4000], metavar=("H", "W"))
    sl.add_argument("--slice", type=int, default=800)
    sl.add_argument("--overlap", type=float, default=0.2)
    sl.add_argument("--batch-size", type=int, default=4, help="sod2's slices per model call")
    sl.add_argument("--merge", choices=["nms", "greedynmm"], default="greedynmm")
    sl.add_argument("--metric", choices=["iou", "ios"], default="ios")
    sl.add_argument("--threshold", type=float, default=0.5)
    sl.add_argument("--class-agnostic", action="store_true")
    sl.add_argument("--repeats", type=int, default=3)
    sl.add_argument("--warmup", type=int, default=1)
    sl.add_argument("--skip-speed", action="store_true", help="only the AP comparison")
    sl.add_argument("--ap", action="store_true", help="also: AP plain vs sliced on generated images")
    sl.add_argument("--ap-images", type=int, default=10)
    sl.add_argument("--ap-size", type=int, default=1024, help="side of the generated images")
    sl.add_argument("--ap-input", type=int, default=256,
                    help="the model's input size: plain inference resizes to it, slices have it")
    sl.add_argument("--ap-seed", type=int, default=11)
    for s in (m, e, c, sl):
        s.add_argument("--output", help="also write the Markdown report here")
    w = sub.add_parser("_worker")
    w.add_argument("--config", required=True)
    w.add_argument("--data-config", required=True)
    w.add_argument("--mode", choices=["train", "test", "both"], default="both")
    w.add_argument("--iters", type=int, default=10)
    w.add_argument("--warmup", type=int, default=3)
    w.add_argument("--distinct-batches", type=int, default=4)
    w.add_argument("--image-size", type=int, nargs=2)
    w.add_argument("--opts", nargs="*", default=[])
    w.add_argument("--data-opts", nargs="*", default=[])
    args = p.parse_args(argv)
    if args.cmd == "_worker":
        return _worker(args)
    report = {"models": bench_models, "evaluator": bench_evaluator, "consistency": bench_consistency,
              "sliced": bench_sliced}[args.cmd](args)
    print(report)
    if args.output:
        with open(args.output, "w") as f:
            f.write(report + "\n")
    return report


if __name__ == "__main__":
    main()
