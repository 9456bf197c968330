"""Golden runs: a config's own model (``instantiate(cfg.model)``) with deterministic weights, one
seeded training forward and one eval forward on a fixed hand-built batch.

The weights do not come from the model's initialisation (which consumes the global RNG in
construction order, and changes when modules move): every tensor of the state dict is
``fill(canonical_key(key), shape, dtype)``, a function of the key's name and shape only. When
a refactor renames keys on purpose, add a rule to ``CANONICAL_RENAMES`` (new name -> today's
name): the moved tensor then gets the same values as before and the golden outputs must still
match. ``tests/fixtures/golden/<stem>.json`` holds the outputs of today's code
(``tests/golden/make_golden.py``); ``tests/test_golden.py`` compares.

Used by ``make_golden.py`` (run against the committed code) and ``tests/test_golden.py``; it
imports nothing from the test suite, so the script runs from any checkout.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

# stem -> config path (relative to configs/); config_snapshots.recorded_stem(stem) names the fixture files
GOLDEN_CONFIGS: Dict[str, str] = {
    "faster_rcnn_R18s_fpn_synthetic": "baselines/faster_rcnn_R18s_fpn_synthetic.py",
    "retinanet_R18s_fpn_synthetic": "baselines/retinanet_R18s_fpn_synthetic.py",
    "cfinet_R18s_fpn_synthetic": "cfinet/cfinet_R18s_fpn_synthetic.py",
    "cfinet_plain_R18s_fpn_synthetic": "cfinet/cfinet_plain_R18s_fpn_synthetic.py",
    "faster_rcnn_srtod_R18s_fpn_synthetic": "srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py",
    "retinanet_srtod_R18s_fpn_synthetic": "srtod/retinanet_srtod_R18s_fpn_synthetic.py",
    "cfinet_srtod_R18s_fpn_synthetic": "srtod/cfinet_srtod_R18s_fpn_synthetic.py",
    "faster_rcnn_srtod_light_R18s_fpn_synthetic": "srtod/faster_rcnn_srtod_light_R18s_fpn_synthetic.py",
    "fgprobe_yolox_tiny_p2_synthetic": "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py",
    "fgprobe_plain_yolox_tiny_p2_synthetic": "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py",
    "bs_yolox_tiny_p2_synthetic": "bsdetr/bs_yolox_tiny_p2_synthetic.py",
    "bsdetr_r18s_synthetic": "bsdetr/bsdetr_r18s_synthetic.py",
    "bsdetr_none_r18s_synthetic": "bsdetr/bsdetr_none_r18s_synthetic.py",
    "rtdetr_r18vd_coco": "rtdetr/rtdetr_r18vd_coco.py",
}

# the method configs whose state-dict keys tests/fixtures/legacy-keys/ records (old checkpoints)
LEGACY_KEY_CONFIGS = (
    "faster_rcnn_srtod_R18s_fpn_synthetic", "retinanet_srtod_R18s_fpn_synthetic",
    "cfinet_srtod_R18s_fpn_synthetic", "faster_rcnn_srtod_light_R18s_fpn_synthetic",
    "fgprobe_yolox_tiny_p2_synthetic", "bsdetr_r18s_synthetic", "bs_yolox_tiny_p2_synthetic",
    "cfinet_R18s_fpn_synthetic",
)

# (regular expression on a key of the current model, replacement giving the key it had when the
# fixtures were recorded[, regular expression that some key of the same model must match for the
# rule to apply]), first match wins. Empty: the fixtures come from today's layout.
CANONICAL_RENAMES: List[Tuple[str, ...]] = [
    # SR-TOD (issue 16): the hook left the backbone for the feature-hook slot; in a model that has
    # the hook, the plain FPN's keys were backbone.fpn.* (only there: a baseline's stay backbone.*)
    (r"^feature_hook\.(head|threshold|dgfe)\.", r"backbone.\1."),
    (r"^backbone\.", "backbone.fpn.", r"^feature_hook\.(head|threshold|dgfe)\."),
    # Better Sampling on RT-DETR (issue 16): the SR generator sits in the criterion's BetterSampling module
    (r"^criterion\.better_sampling\.reweighting\.", "criterion.reweighting."),
    # Foreground Probing (issue 16): the probe left the head for FGProbeYOLOX.probe
    (r"^probe\.", "head.probe."),
    # dense Better Sampling (issue 16): the SR generator sits in BetterSamplingYOLOX's BetterSampling module
    (r"^better_sampling\.reweighting\.", "reweighting."),
]

TOP_K = 50  # detections recorded per image
# Intra-op threads of the golden runs: CPU kernels pick other algorithms for one thread than for
# several (measured: losses 9e-6 relative, boxes 2e-3 px, scores 6e-6 apart between 1 and 2
# threads, against <= 1.4e-7 relative and 0 between 2 and 4), so every run uses the same count,
# whatever the machine's (two threads also run on one core).
THREADS = 2
# Memory-bank slots (CFINet's feature bank) filled: a bank that already holds features, so the
# imitation loss reads it; below any configured capacity.
BANK_FILL = 16


def canonical_key(key: str, model_keys: Sequence[str] = ()) -> str:
    """The name ``key`` (a state-dict key of a model whose keys are ``model_keys``) had when the
    fixtures were recorded (``CANONICAL_RENAMES``; a rule with a condition applies only when one
    of ``model_keys`` matches it)."""
    for pattern, repl, *when in CANONICAL_RENAMES:
        if when and not any(re.search(when[0], k) for k in model_keys):
            continue
        if re.search(pattern, key):
            return re.sub(pattern, repl, key)
    return key


def _uniform(key: str, shape: Sequence[int], low: float, high: float) -> np.ndarray:
    # numpy's RandomState stream is frozen (NEP 19), so the values do not depend on the
    # torch or numpy version; the seed is the key's SHA-256, not Python's salted hash()
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return np.random.RandomState(seed).uniform(low, high, size=tuple(shape))


def fill(key: str, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Deterministic values for the state-dict entry ``key`` (give the canonical name) of
    ``shape``: a function of the name and shape only.

    Sane for a forward pass: BatchNorm running variances in [0.5, 1.5] and means in
    [-0.1, 0.1]; 1-D ``weight`` (norm scales) in [0.9, 1.1]; other 1-D tensors (biases) in
    [-0.1, 0.1]; scalars in [0.02, 0.1] (SR-TOD's difference threshold t, in [0, 1] pixel
    units); tensors of >= 2 dims uniform with LeCun's bound sqrt(3 / fan_in) (unit gain: the
    FPNs and heads without norms neither blow up nor saturate the scores), fan_in the product
    of all but the first dimension; ``num_batches_tracked`` 0; the memory bank's
    ``bank_count``/``bank_next`` ``BANK_FILL`` (that many slots filled, the next one written).
    """
    shape = tuple(int(s) for s in shape)
    if not dtype.is_floating_point:
        if key.endswith((".bank_count", ".bank_next")):
            return torch.full(shape, BANK_FILL, dtype=dtype)
        if key.endswith(".num_batches_tracked"):
            return torch.zeros(shape, dtype=dtype)
        raise ValueError(f"no fill rule for the integer tensor {key} {shape}")
    if key.endswith(".running_var"):
        v = _uniform(key, shape, 0.5, 1.5)
    elif key.endswith(".running_mean"):
        v = _uniform(key, shape, -0.1, 0.1)
    elif len(shape) == 0:
        v = _uniform(key, shape, 0.02, 0.1)
    elif len(shape) == 1:
        v = _uniform(key, shape, 0.9, 1.1) if key.endswith("weight") else _uniform(key, shape, -0.1, 0.1)
    else:
        bound = math.sqrt(3.0 / max(1, math.prod(shape[1:])))
        v = _uniform(key, shape, -bound, bound)
    return torch.from_numpy(np.asarray(v)).to(dtype)


def fill_model(model: torch.nn.Module) -> float:
    """Overwrite every state-dict entry of ``model`` with ``fill(canonical_key(key), ...)``
    (strict load). Returns a checksum of the values (float64 sum of |values|): a rename that
    misses a rule of ``CANONICAL_RENAMES`` changes it (a diagnostic when the outputs differ).
    The running statistics are then set by ``calibrating_norms``."""
    sd = model.state_dict()
    new = {k: fill(canonical_key(k, list(sd)), v.shape, v.dtype) for k, v in sd.items()}
    model.load_state_dict(new, strict=True)
    return float(sum(t.double().abs().sum() for t in new.values()))


@contextlib.contextmanager
def calibrating_norms(model: torch.nn.Module):
    """Within the block, every BatchNorm-like module of ``model`` (``running_mean`` and
    ``running_var`` buffers: BatchNorm, SyncBatchNorm, Detectron2's FrozenBatchNorm2d) takes,
    at its first call, the per-channel mean and biased variance of its input as its running
    statistics, before computing its output. One eval forward of the fixed batch inside the
    block therefore gives the same outputs as a second forward after it would, and leaves the
    calibrated statistics in the state dict.

    Why: with filled weights and filled statistics, activations grow layer after layer in eval
    mode (YOLOX even reads raw 0-255 pixels) and every score saturates; calibrated, each
    normalised layer's output has unit scale as in a trained network, deterministically (the
    batch is fixed). Norms the eval path does not reach (training-only) keep their fill."""
    norms = [m for m in model.modules()
             if isinstance(getattr(m, "running_mean", None), torch.Tensor)
             and isinstance(getattr(m, "running_var", None), torch.Tensor)]
    done = set()

    def calibrate(module, args):
        if id(module) in done:
            return
        done.add(id(module))
        x = args[0].detach()
        dims = [d for d in range(x.dim()) if d != 1]
        module.running_mean.copy_(x.mean(dim=dims).to(module.running_mean.dtype))
        module.running_var.copy_(x.var(dim=dims, unbiased=False).to(module.running_var.dtype))

    handles = [m.register_forward_pre_hook(calibrate) for m in norms]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def build_model(config_path: str):
    """The config's own model, nothing overridden (``instantiate(cfg.model)``)."""
    from sod2.config import get_config

    return instantiate(get_config(config_path).model)


# The hand-built batch: (height, width, [(x1, y1, x2, y2, class)]), the second image without
# objects and of another height (padding within the batch).
BATCH_SPEC = (
    (128, 128, [(10, 12, 18, 22, 0), (40, 30, 72, 52, 1), (90, 88, 100, 96, 2),
                (20, 80, 44, 118, 0), (100, 10, 124, 30, 1), (60, 100, 66, 106, 2)]),
    (96, 128, []),
)


def golden_batch(with_instances: bool = True) -> List[dict]:
    """Detectron2 model inputs: uint8 (3, H, W) images of ``BATCH_SPEC``: noise around grey 60
    (sigma 8, numpy's frozen RandomState) with each box painted in a class colour, and the boxes
    as ``instances`` (``gt_boxes``, ``gt_classes``, ``gt_orig_areas``) when ``with_instances``."""
    from detectron2.structures import Boxes, Instances

    colours = ((200, 60, 60), (60, 200, 60), (60, 60, 200))
    out = []
    for i, (h, w, boxes) in enumerate(BATCH_SPEC):
        rs = np.random.RandomState(1000 + i)
        img = 60.0 + 8.0 * rs.standard_normal((3, h, w))
        for x1, y1, x2, y2, c in boxes:
            img[:, y1:y2, x1:x2] = np.asarray(colours[c], dtype=np.float64)[:, None, None]
        d = {"image": torch.from_numpy(np.clip(np.rint(img), 0, 255).astype(np.uint8)), "height": h, "width": w}
        if with_instances:
            inst = Instances((h, w))
            inst.gt_boxes = Boxes(torch.tensor([b[:4] for b in boxes], dtype=torch.float32).reshape(-1, 4))
            inst.gt_classes = torch.tensor([b[4] for b in boxes], dtype=torch.int64)
            inst.gt_orig_areas = inst.gt_boxes.area()  # as sod2's mappers (no resize here)
            d["instances"] = inst
        out.append(d)
    return out


def _seed(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_golden(model: torch.nn.Module) -> dict:
    """Fill ``model``, run one eval forward (no gradient; it calibrates the norms, see
    ``calibrating_norms``) and then one training forward (seeded, inside ``EventStorage(0)``)
    on ``golden_batch()``, with ``THREADS`` intra-op threads (restored afterwards).

    Returns ``{"fill_checksum", "losses": {name: float}, "detections": [per image {"boxes":
    (K, 4) list, "scores": (K,), "classes": (K,)}]}``, K <= ``TOP_K``, by decreasing score
    (a stable sort of the model's output)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run(model)
    finally:
        torch.set_num_threads(threads)


def _run(model: torch.nn.Module) -> dict:
    checksum = fill_model(model)
    model.eval()
    _seed()
    with torch.no_grad(), calibrating_norms(model):
        outputs = model(golden_batch(with_instances=False))
    detections = []
    for o in outputs:
        inst = o["instances"].to("cpu")
        scores = inst.scores.detach()
        order = torch.sort(scores, descending=True, stable=True).indices[:TOP_K]
        detections.append({"boxes": inst.pred_boxes.tensor.detach()[order].tolist(),
                           "scores": scores[order].tolist(),
                           "classes": inst.pred_classes[order].tolist()})
    model.train()
    _seed()
    with EventStorage(0):
        losses = model(golden_batch())
    return {"fill_checksum": checksum,
            "losses": {k: float(v.detach()) for k, v in sorted(losses.items())},
            "detections": detections}


# Rounding of the fixture values: well below the tolerances of tests/test_golden.py
def round_record(rec: dict) -> dict:
    """``run_golden``'s record with losses to 9 significant digits, boxes to 1e-5 px and
    scores to 1e-8 (non-finite values are kept, as strings, and fail the test)."""
    def sig(x):
        return float(f"{x:.9g}") if math.isfinite(x) else str(x)

    return {"fill_checksum": sig(rec["fill_checksum"]),
            "losses": {k: sig(v) for k, v in rec["losses"].items()},
            "detections": [{"boxes": [[round(c, 5) for c in b] for b in d["boxes"]],
                            "scores": [round(s, 8) for s in d["scores"]],
                            "classes": d["classes"]} for d in rec["detections"]]}


def state_dict_layout(model: torch.nn.Module) -> Dict[str, list]:
    """Key -> [shape, dtype, "parameter" | "buffer"] of ``model.state_dict()``, in its order."""
    params = dict(model.named_parameters())
    return {k: [list(v.shape), str(v.dtype).replace("torch.", ""), "parameter" if k in params else "buffer"]
            for k, v in model.state_dict().items()}


def dump_json(obj) -> str:
    """``obj`` (a dict) as indented JSON, one line per box, score list and state-dict layout
    entry ``[shape, dtype, kind]`` (lists of lists go one element per line, other lists and
    lists that also hold strings on one line)."""
    def dump(o, indent):
        inner = " " * (indent + 1)
        if isinstance(o, dict) and o:
            items = [f"{inner}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
        if (isinstance(o, list) and any(isinstance(v, (dict, list)) for v in o)
                and not any(isinstance(v, str) for v in o)):
            return "[\n" + ",\n".join(inner + dump(v, indent + 1) for v in o) + "\n" + " " * indent + "]"
        return json.dumps(o, separators=(", ", ": "))

    return dump(obj, 0) + "\n"
