#!/usr/bin/env python3
"""
Speed of exported detectors: PyTorch eager vs ONNX Runtime (CPU), and OpenVINO where installed.

    python tools/benchmark_export.py [--models yolox_s rtdetr_r18vd ... | CONFIG.py ...] \\
        [--image-size 640] [--iters 20] [--warmup 3] [--threads N] [--dynamic] [--output speed.md]

For each model, in this one process, one after the other:

1. the config is loaded with its test resize set so that a ``S`` x ``S`` image (``--image-size``,
   uniform noise, seed 0) reaches the network at ``S`` px on the long side: YOLOX's
   ``YOLOXTestResize`` and square padding, RT-DETR's fixed ``Resize`` (and its precomputed
   anchor size), Detectron2's ``ResizeShortestEdge`` (short edge ``S``) are overridden when the
   config tests at another size (the ``test resize`` column says what ran);
2. the model is built with the parity check's seeded random weights (seed 0; the graphs need no
   training): :func:`sod2.export.parity.random_model` with the score heads scaled by their
   fan-in and :func:`~sod2.export.parity.calibrate_batchnorm_` on the input, so that the model
   detects and both sides time their post-processing (NMS, caps) too; saved as a
   checkpoint, and exported with ``tools/export_model.py`` (fixed input size unless
   ``--dynamic``) from that checkpoint, so both sides run the same weights;
3. both run the same test-mapper input (batch 1), post-processing to the original size included:
   eager ``model([inputs])`` in eval mode under ``torch.inference_mode()``, and
   :class:`sod2.inference.OnnxModel` (ONNX Runtime's CPU provider, all graph optimisations,
   sequential execution); torch's intra-op threads and ONNX Runtime's intra-op threads are both
   ``--threads`` (default: the usable cores);
4. ``--warmup`` untimed calls, then ``--iters`` timed calls each (:func:`sod2.utils.benchmark.
   time_callable`): median and interquartile range in ms, and the ratio eager / runtime of the
   medians (> 1: the exported graph is faster);
5. with ``--int8 DATASET``, an INT8 copy of each export (:func:`sod2.export.quantize.quantize_export`,
   the static quantization of ``tools/quantize_model.py``, calibrated on ``--int8-images`` images of
   the registered dataset) timed the same way (its speed only: the random weights' accuracy says
   nothing; README "INT8 quantization" measures the trained demo model's AP).

Models (``--models``; names or config files): yolox_s, yolox_s_fgprobe, rtdetr_r18vd, rtdetr_r50vd,
faster_rcnn_r50_fpn, cfinet_r50 (default: all six). ``yolox_s_fgprobe`` is
``configs/fgprobe/fgprobe_yolox_s_p2_hituav.py``: YOLOX-S with Foreground Probing (``FGProbeYOLOX``, P2-P5 head,
K = 500 tokens), 4 classes; ``yolox_s`` is the 80-class COCO config.

The table (Markdown, a header line with the CPU, the versions and the thread counts) goes to
stdout and, with ``--output``, to a file. User errors: one line ``error: ...``, exit status 2.
"""
import argparse
import logging
import os
import sys
import tempfile

try:
    import sod2  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import sod2  # noqa: F401

import numpy as np
import torch

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, cpu_count, environment_line, time_callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
logger = logging.getLogger("sod2.benchmark_export")

MODELS = {  # name: (row label, config file relative to the repository)
    "yolox_s": ("YOLOX-S", "configs/yolox/yolox_s_coco.py"),
    "yolox_s_fgprobe": ("YOLOX-S + Foreground Probing", "configs/fgprobe/fgprobe_yolox_s_p2_hituav.py"),
    "rtdetr_r18vd": ("RT-DETR-R18vd", "configs/rtdetr/rtdetr_r18vd_coco.py"),
    "rtdetr_r50vd": ("RT-DETR-R50vd", "configs/rtdetr/rtdetr_r50vd_coco.py"),
    "faster_rcnn_r50_fpn": ("Faster R-CNN R50-FPN", "configs/baselines/faster_rcnn_R50_fpn_visdrone_1x.py"),
    "cfinet_r50": ("CFINet R50-FPN", "configs/cfinet/cfinet_R50_fpn_visdrone_1x.py"),
}

COLUMNS = ["model", "config", "test resize", "input (HxW)", "eager (ms)", "ONNX Runtime (ms)",
           "eager / ORT", "ORT INT8 (ms, eager / INT8)", "OpenVINO (ms)", "detections eager / ORT"]


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME_OR_CONFIG",
                   help=f"model names ({', '.join(MODELS)}) or config files (default: all names)")
    p.add_argument("--image-size", type=int, default=640, metavar="S",
                   help="the test image is S x S and reaches the network at S px on the long side (default 640)")
    p.add_argument("--iters", type=int, default=20, help="timed calls per model and runtime (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before them (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch and ONNX Runtime intra-op threads (default: the usable cores)")
    p.add_argument("--int8", default=None, metavar="DATASET",
                   help="also time an INT8 copy of each export (tools/quantize_model.py's static quantization, "
                        "calibrated on --int8-images images of this registered dataset)")
    p.add_argument("--int8-images", type=int, default=16, metavar="N", help="calibration images for --int8 (default 16)")
    p.add_argument("--dynamic", action="store_true", help="export with dynamic height/width (default: fixed size)")
    p.add_argument("--output", default=None, metavar="FILE", help="also write the Markdown table here")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="keep the checkpoints and exported graphs here (default: a temporary folder, removed)")
    return p


# ------------------------------------------------------------------------- the test resize
def _target_name(target) -> str:
    return target if isinstance(target, str) else f"{target.__module__}.{target.__qualname__}"


def _hydra(value) -> str:
    """``value`` (a config value: number, bool, string, list, dict) in Hydra's override grammar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra(v)}" for k, v in value.items()) + "}"
    return str(value)


def size_overrides(cfg, size: int):
    """Config overrides that make the test mapper give an ``size`` x ``size`` image to the model
    at ``size`` px on the long side, and a description of the test resize that runs.

    Returns:
        (overrides: list of ``key=value``, description: str)
    Raises:
        UserError: a test mapper with several augmentations or an unknown resize.
    """
    from detectron2.data import transforms as T
    from omegaconf import OmegaConf

    from sod2.data.transforms import YOLOXTestResize

    augs = list(cfg.dataloader.test.mapper.get("augmentations", None) or [])
    if not augs:
        return [], "none"
    if len(augs) > 1:
        raise UserError(f"the test mapper has {len(augs)} augmentations; benchmark_export handles one resize")
    node = OmegaConf.to_container(augs[0], resolve=True)
    target = node.get("_target_")
    node["_target_"] = _target_name(target)
    target_cls = target if isinstance(target, type) else None
    opts = []
    if target_cls is not None and issubclass(target_cls, YOLOXTestResize):
        old = node["size"]
        desc = f"YOLOXTestResize({old})"
        if (old if isinstance(old, list) else [old, old]) != [size, size]:
            node["size"] = size
            if cfg.model.get("backbone", {}).get("square_pad", 0):
                opts.append(f"model.backbone.square_pad={size}")
            desc += f" -> ({size})"
    elif target_cls is not None and issubclass(target_cls, T.ResizeShortestEdge):
        old_short, old_max = node["short_edge_length"], node.get("max_size", 10 ** 9)
        desc = f"ResizeShortestEdge({old_short}, max {old_max})"
        if (old_short if isinstance(old_short, list) else [old_short]) != [size] or old_max < size:
            node["short_edge_length"], node["max_size"] = size, max(size, old_max)
            desc += f" -> ({size}, max {node['max_size']})"
    elif target_cls is not None and issubclass(target_cls, T.Resize):
        old = list(node["shape"]) if isinstance(node["shape"], list) else [node["shape"]] * 2
        desc = f"Resize({old[0]}x{old[1]})"
        if old != [size, size]:
            node["shape"] = [size, size]
            for key in ("model.encoder.eval_spatial_size", "model.decoder.query_selection.eval_spatial_size"):
                if OmegaConf.select(cfg, key, default=None) is not None:
                    opts.append(f"{key}=[{size},{size}]")
            desc += f" -> ({size}x{size})"
    else:
        raise UserError(f"test augmentation {node['_target_']} is not one benchmark_export can set to {size} px "
                        "(ResizeShortestEdge, YOLOXTestResize, Resize)")
    if opts or "->" in desc:
        opts.insert(0, f"dataloader.test.mapper.augmentations=[{_hydra(node)}]")
    return opts, desc


# --------------------------------------------------------------------------- the runtimes
def _ort_session_options(threads: int):
    from sod2.inference.onnx_model import import_onnxruntime

    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return so


class OpenVINOModel:
    """An exported ONNX graph compiled by OpenVINO for the CPU, called like
    :class:`~sod2.inference.OnnxModel` (same inputs, same :func:`~sod2.export.postprocess.
    to_original`), for batch-1 timing."""

    def __init__(self, onnx_model, threads: int):
        import openvino as ov

        core = ov.Core()
        self.onnx_model = onnx_model
        self.compiled = core.compile_model(onnx_model.path, "CPU", {"INFERENCE_NUM_THREADS": threads})

    def __call__(self, batched_inputs):
        from sod2.export.postprocess import to_original

        meta = self.onnx_model.metadata
        arrays = [self.onnx_model._input(n, inp) for n, inp in enumerate(batched_inputs)]
        batch = np.stack(arrays)
        result = self.compiled({meta.input_name: batch})
        outputs = [result[self.compiled.output(name)] for name in meta.output_names]
        mapped = to_original(*outputs, batched_inputs, batch.shape[2:], family=meta.family, clip_boxes=meta.clip_boxes,
                             max_detections_per_image=meta.max_detections_per_image)
        return [{"instances": inst} for inst in mapped]


def _openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def _count(outputs, who: str, label: str) -> int:
    """Detections of the single output; ValueError on non-finite boxes or scores."""
    inst = outputs[0]["instances"]
    if not (torch.isfinite(inst.pred_boxes.tensor).all() and torch.isfinite(inst.scores).all()):
        raise ValueError(f"{label}: {who} gave non-finite boxes or scores")
    return len(inst)


def _ms(timing) -> str:
    return f"{1e3 * timing.median:.1f} ± {1e3 * timing.spread:.1f}"


# ------------------------------------------------------------------------------ one model
def _resolve(name: str):
    """(label, config path) of a model name or config file."""
    if name in MODELS:
        label, config = MODELS[name]
        return label, os.path.join(ROOT, config)
    if name.endswith((".py", ".yaml", ".yml")):
        if not os.path.isfile(name):
            raise UserError(f"--models: {name}: no such file")
        return os.path.splitext(os.path.basename(name))[0], name
    raise UserError(f"--models: unknown model {name!r} (names: {', '.join(MODELS)}; or a config file)")


def _noise_image(folder: str, size: int) -> str:
    import cv2

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"noise_{size}.png")
    if not os.path.isfile(path) and not cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (size, size, 3),
                                                                                           dtype=np.uint8)):
        raise UserError(f"--workdir: cannot write {path}")
    return path


def bench_model(name: str, args, workdir: str, image: str, threads: int) -> dict:
    """Export and time one model; returns the row's values (times in seconds)."""
    from detectron2.config import instantiate

    from sod2.engine.lazy_train import load_config
    from sod2.export.parity import SCORE_HEADS, calibrate_batchnorm_, load_export_tool, random_model
    from sod2.inference import OnnxModel

    label, config = _resolve(name)
    size_opts, resize = size_overrides(load_config(config, [], warn=False), args.image_size)
    folder = os.path.join(workdir, os.path.splitext(os.path.basename(config))[0])
    os.makedirs(folder, exist_ok=True)
    ckpt = os.path.join(folder, "random_init.pth")
    cfg = load_config(config, size_opts + [f"train.init_checkpoint={ckpt}"], warn=False)
    mapper = instantiate(cfg.dataloader.test.mapper)
    mapped = mapper({"file_name": image, "height": args.image_size, "width": args.image_size, "image_id": 0})
    inputs = [{k: mapped[k] for k in ("image", "height", "width", "resize_ratio") if k in mapped}]
    # the parity check's seeded weights with BatchNorm statistics set from this input and score heads
    # scaled by their fan-in: unlike a fresh init (every YOLOX score ~1e-4, below the threshold), the
    # models detect, so both sides time their post-processing (NMS, the per-image cap) too
    model = random_model(cfg, seed=0, head_std=None, score_heads=SCORE_HEADS)
    calibrate_batchnorm_(model, [dict(d) for d in inputs])
    model.eval()
    torch.save({"model": model.state_dict()}, ckpt)

    export_args = ["--config-file", config, "--output", folder, "--sample-image", image, "--allow-random-weights"]
    if args.dynamic:
        export_args.append("--dynamic")
    export_args += ["--opts", *size_opts, f"train.init_checkpoint={ckpt}"]
    logger.info("%s: exporting (%s)", label, " ".join(export_args))
    if load_export_tool().main(export_args) != 0:
        raise UserError(f"{label}: tools/export_model.py {' '.join(export_args)} failed (see above)")

    h, w = inputs[0]["image"].shape[1:]

    torch.set_num_threads(threads)
    with torch.inference_mode():
        n_eager = _count(model(inputs), "PyTorch eager", label)
        eager = time_callable(lambda: model(inputs), iters=args.iters, warmup=args.warmup)
    onnx = OnnxModel(os.path.join(folder, "model.onnx"), session_options=_ort_session_options(threads))
    n_ort = _count(onnx(inputs), "ONNX Runtime", label)
    ort_t = time_callable(lambda: onnx(inputs), iters=args.iters, warmup=args.warmup)
    int8 = "-"
    if args.int8:
        from sod2.export.quantize import quantize_export

        quantize_export(os.path.join(folder, "model.onnx"), args.int8, os.path.join(folder, "int8"),
                        num_images=args.int8_images)
        q_model = OnnxModel(os.path.join(folder, "int8", "model.onnx"), session_options=_ort_session_options(threads))
        _count(q_model(inputs), "ONNX Runtime INT8", label)
        q_t = time_callable(lambda: q_model(inputs), iters=args.iters, warmup=args.warmup)
        int8 = f"{_ms(q_t)} ({eager.median / q_t.median:.2f}x)"
    openvino = "not installed"
    if _openvino_available():
        ov_model = OpenVINOModel(onnx, threads)
        _count(ov_model(inputs), "OpenVINO", label)
        ov_t = time_callable(lambda: ov_model(inputs), iters=args.iters, warmup=args.warmup)
        openvino = f"{_ms(ov_t)} ({eager.median / ov_t.median:.2f}x)"
    row = dict(label=label, config=os.path.relpath(os.path.abspath(config), ROOT), resize=resize,
               input=f"{h}x{w}", eager=eager, ort=ort_t, int8=int8, openvino=openvino, detections=(n_eager, n_ort))
    logger.info("%s: eager %.1f ms, ORT %.1f ms", label, 1e3 * eager.median, 1e3 * ort_t.median)
    return row


def run(args) -> ResultTable:
    """Benchmark every model of ``args.models``; returns the filled table."""
    from sod2.export.onnx import require_export_packages
    from sod2.inference.onnx_model import import_onnxruntime

    require_export_packages("onnx", "onnxscript")
    import_onnxruntime()
    if args.image_size < 32:
        raise UserError(f"--image-size must be at least 32, got {args.image_size}")
    threads = args.threads or cpu_count()
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    time_callable(lambda: None, iters=args.iters, warmup=args.warmup)  # checks --iters/--warmup up front
    for name in args.models:
        _resolve(name)
    header = environment_line(torch_intra_op=threads, onnxruntime_intra_op=threads) + \
        f"; batch 1, {args.image_size}x{args.image_size} noise image, seeded random weights (BatchNorm statistics from the input), " \
        f"{'dynamic' if args.dynamic else 'fixed'}-size export; median ± IQR of {args.iters} calls after " \
        f"{args.warmup} warm-up calls"
    table = ResultTable(COLUMNS, header=header)
    with tempfile.TemporaryDirectory(prefix="sod2_bench_export_") as tmp:
        workdir = args.workdir or tmp
        image = _noise_image(workdir, args.image_size)
        for name in args.models:
            r = bench_model(name, args, workdir, image, threads)
            table.add_row([r["label"], f"`{r['config']}`", r["resize"], r["input"], _ms(r["eager"]), _ms(r["ort"]),
                           f"{r['eager'].median / r['ort'].median:.2f}x", r["int8"], r["openvino"],
                           "%d / %d" % r["detections"]])
    return table


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    try:
        table = run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table.write(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
