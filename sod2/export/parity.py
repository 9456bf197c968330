"""
Output parity of an exported model (issue "Deployment"): the exported ONNX graph under ONNX
Runtime against the PyTorch model it came from, on the same images through the config's test
mapper, compared as the final :class:`Instances` a user gets (original image size).

Used by the export tests (tests/export/), ``tools/check_export_parity.py`` and the GPU check
(``tools/gpu_check.sh``), so that all of them measure the same thing:

* weights: the config's initialisation with a fixed seed, every parameter perturbed by
  Gaussian noise (:func:`random_model`; without it many initial weights are equal or zero and
  scores tie, and tied scores come out in an arbitrary order in any top-K / NMS); for deep
  full-size models, :func:`calibrate_batchnorm_` then sets every BatchNorm's statistics to those
  of its input on the images, so that activations stay of order one through 50 layers instead
  of exploding or vanishing with random statistics;
* images: uniform noise (:func:`noise_images`; no flat region, so no two locations see the same
  pixels);
* comparison (:func:`pair_detections`): the same number of detections, a one-to-one pairing
  with equal labels, then the largest box (px) and score differences over the pairs; detections
  whose scores differ by less than the numerical error may come out in another order, so the
  pairing does not require equal positions (it reports the largest position shift).
"""
from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import UserError

__all__ = ["DEFAULT_BOX_TOL", "DEFAULT_SCORE_TOL", "SCORE_HEADS", "perturb_", "random_model", "calibrate_batchnorm_",
           "noise_images", "Pairing", "pair_detections", "ParityReport", "compare_models", "format_table",
           "check_export_parity", "load_export_tool"]

DEFAULT_BOX_TOL = 1e-2  # px, in the original image
DEFAULT_SCORE_TOL = 1e-4


# ------------------------------------------------------------------------------- weights
YOLOX_SCORE_HEADS = ("head.obj_preds", "head.cls_preds")
#: YOLOX's and RetinaNet's (``head.cls_score``) thresholded score predictors
SCORE_HEADS = YOLOX_SCORE_HEADS + ("head.cls_score",)


def perturb_(model: nn.Module, noise: float = 0.01, head_std: Optional[float] = 10.0,
             score_heads: Sequence[str] = YOLOX_SCORE_HEADS) -> nn.Module:
    """Add ``noise * N(0, 1)`` to every parameter of ``model`` (in place, from torch's global
    generator: seed it first). The score predictors named by ``score_heads`` (parameter name
    prefixes; by default YOLOX's objectness and class predictors) then get weights
    ``N(0, head_std)`` and bias -3, so that a few hundred locations pass the score threshold
    (0.01 / 0.05) with spread-out scores (the initial bias, -4.6, leaves almost none). 10 suits
    a small YOLOX with its initial BatchNorm statistics (small activations); ``head_std=None``
    gives ``2 / sqrt(fan_in)``, logits of spread ~2 for the unit-variance activations of
    :func:`calibrate_batchnorm_` (a larger spread saturates the sigmoid: scores of exactly 1.0
    tie). Returns ``model``."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * noise)
        for n, p in model.named_parameters():
            if n.startswith(tuple(score_heads)):
                if not n.endswith("weight"):
                    p.fill_(-3.0)
                    continue
                p.normal_(0, head_std if head_std is not None else 2.0 / (p[0].numel() ** 0.5))
    return model


def random_model(cfg, seed: int = 0, noise: float = 0.01, head_std: Optional[float] = 10.0,
                 score_heads: Sequence[str] = YOLOX_SCORE_HEADS) -> nn.Module:
    """``instantiate(cfg.model)`` after ``torch.manual_seed(seed)``, then :func:`perturb_`; in
    eval mode, on the CPU."""
    from detectron2.config import instantiate

    torch.manual_seed(seed)
    model = instantiate(cfg.model)
    return perturb_(model, noise, head_std, score_heads).eval()


def calibrate_batchnorm_(model: nn.Module, batched_inputs: List[Dict]) -> int:
    """Set the statistics of every BatchNorm (``torch.nn`` BatchNorm and Detectron2's
    ``FrozenBatchNorm2d``) of ``model`` to the per-channel mean and (biased) variance of its
    input on ``batched_inputs``: one forward pass in eval mode, each layer set just before it
    runs, so every later layer sees the already-normalised activations. The affine weights
    stay (random, when perturbed). Returns how many layers were set.

    Raises:
        ValueError: a non-finite statistic (the model's activations overflowed before that
            layer).
    """
    from detectron2.layers import FrozenBatchNorm2d

    def pre_hook(m, args):
        x = args[0].detach()
        dims = [d for d in range(x.ndim) if d != 1]
        mean, var = x.mean(dims), x.var(dims, unbiased=False)
        if not (torch.isfinite(mean).all() and torch.isfinite(var).all()):
            raise ValueError(f"calibrate_batchnorm_: non-finite statistics at {names[m]}")
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)

    norms = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)
    names = {m: n for n, m in model.named_modules() if isinstance(m, norms)}
    hooks = [m.register_forward_pre_hook(pre_hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batched_inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return len(names)


def noise_images(folder: str, num: int, height: int, width: int, seed: int = 0) -> List[Dict]:
    """``num`` uniform-noise uint8 RGB images of ``height`` x ``width`` written as PNG into
    ``folder`` (seeded by ``seed + i``); their dataset dicts (``file_name``, ``height``,
    ``width``, ``image_id``)."""
    import cv2

    os.makedirs(folder, exist_ok=True)
    out = []
    for i in range(num):
        path = os.path.join(folder, f"noise_{height}x{width}_{seed + i}.png")
        pixels = np.random.default_rng(seed + i).integers(0, 256, (height, width, 3), dtype=np.uint8)
        if not cv2.imwrite(path, pixels):
            raise UserError(f"{path}: cannot write the parity image")
        out.append({"file_name": path, "height": height, "width": width, "image_id": seed + i})
    return out


# ---------------------------------------------------------------------------- comparison
@dataclass
class Pairing:
    """How one set of detections compares to a reference set (one image or a sum of images).

    ``unpaired``: detections of either side without a partner of the same label (count
    differences included); ``max_box_diff`` (px) / ``max_score_diff``: over the pairs (inf
    when a value is not finite); ``max_shift``: the largest difference in position (rank)
    between paired detections."""

    count_ref: int = 0
    count_got: int = 0
    unpaired: int = 0
    max_box_diff: float = 0.0
    max_score_diff: float = 0.0
    max_shift: int = 0
    box_tol: float = DEFAULT_BOX_TOL
    score_tol: float = DEFAULT_SCORE_TOL

    @property
    def passed(self) -> bool:
        """Same count, everything paired, both maxima within their tolerances."""
        return (self.count_ref == self.count_got and self.unpaired == 0
                and self.max_box_diff <= self.box_tol and self.max_score_diff <= self.score_tol)

    def add(self, other: "Pairing") -> "Pairing":
        """This pairing summed with ``other`` (counts added, maxima taken)."""
        return Pairing(self.count_ref + other.count_ref, self.count_got + other.count_got,
                       self.unpaired + other.unpaired, max(self.max_box_diff, other.max_box_diff),
                       max(self.max_score_diff, other.max_score_diff), max(self.max_shift, other.max_shift),
                       self.box_tol, self.score_tol)


def _fields(inst) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (inst.pred_boxes.tensor.detach().cpu().double().numpy().reshape(-1, 4),
            inst.scores.detach().cpu().double().numpy(), inst.pred_classes.detach().cpu().numpy())


def pair_detections(got, ref, box_tol: float = DEFAULT_BOX_TOL, score_tol: float = DEFAULT_SCORE_TOL) -> Pairing:
    """Pair the detections of ``got`` with those of ``ref`` (two :class:`Instances` with
    ``pred_boxes``, ``scores``, ``pred_classes``) one to one.

    Only equal labels pair. The cost of a pair is ``max(max |box difference| / box_tol,
    |score difference| / score_tol)``; pairs are taken by increasing cost (each detection at
    most once), so a detection's exact twin is found wherever it is in the order. Non-finite
    boxes or scores count as an infinite difference (never a pass).

    Returns:
        :class:`Pairing` of this image.
    """
    gb, gs, gc = _fields(got)
    rb, rs, rc = _fields(ref)
    out = Pairing(len(rs), len(gs), 0, 0.0, 0.0, 0, box_tol, score_tol)
    if got.image_size != ref.image_size:
        raise ValueError(f"pair_detections: image sizes differ, {got.image_size} vs {ref.image_size}")
    if len(rs) == 0 or len(gs) == 0:
        out.unpaired = len(rs) + len(gs)
        return out
    with np.errstate(invalid="ignore"):
        box = np.abs(rb[:, None] - gb[None]).max(axis=2)  # (n_ref, n_got)
        score = np.abs(rs[:, None] - gs[None])
    box[~np.isfinite(box)] = np.inf
    score[~np.isfinite(score)] = np.inf
    cost = np.maximum(box / box_tol, score / score_tol)
    cost[rc[:, None] != gc[None]] = np.nan  # never paired
    i, j = np.nonzero(~np.isnan(cost))
    order = np.argsort(cost[i, j], kind="stable")
    used_r = np.zeros(len(rs), dtype=bool)
    used_g = np.zeros(len(gs), dtype=bool)
    pairs = []
    for a, b in zip(i[order], j[order]):
        if not used_r[a] and not used_g[b]:
            used_r[a] = used_g[b] = True
            pairs.append((a, b))
    if pairs:
        a, b = np.array(pairs).T
        out.max_box_diff = float(box[a, b].max())
        out.max_score_diff = float(score[a, b].max())
        out.max_shift = int(np.abs(a - b).max())
    out.unpaired = int((~used_r).sum() + (~used_g).sum())
    return out


@dataclass
class ParityReport:
    """One exported model under one ONNX Runtime execution provider against PyTorch.

    ``input_size``: (h, w) of the graph's input (after the test mapper); ``pairing``: summed
    over ``images``; ``providers``: those the session really uses, first = main one."""

    model: str
    family: str
    provider: str
    device: str
    input_size: Tuple[int, int]
    images: int
    dynamic: bool
    pairing: Pairing
    providers: List[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """The pairing passed, on at least one detection (none would compare nothing)."""
        return self.pairing.passed and self.pairing.count_ref > 0

    def row(self) -> List[str]:
        p = self.pairing
        return [self.model, self.family, self.provider, f"torch {self.device}",
                "x".join(str(v) for v in self.input_size) + (" (dynamic)" if self.dynamic else ""),
                str(self.images), f"{p.count_ref} / {p.count_got}", str(p.unpaired), f"{p.max_box_diff:.2e}",
                f"{p.max_score_diff:.2e}", str(p.max_shift), "PASS" if self.passed else ("FAIL (no detections)" if p.passed else "FAIL")]


HEADER = ["model", "family", "ONNX Runtime provider", "reference", "input HxW", "images",
          "detections torch / onnx", "unpaired", "max box diff (px)", "max score diff", "max rank shift", "result"]


def format_table(reports: Sequence[ParityReport]) -> str:
    """A Markdown table, one row per report, with the tolerances underneath."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.row()) + " |" for r in reports]
    if reports:
        p = reports[0].pairing
        lines.append(f"\ntolerances: boxes {p.box_tol:g} px, scores {p.score_tol:g} (same count and labels)")
    return "\n".join(lines)


def compare_models(onnx_model, torch_model: nn.Module, inputs: Sequence[Dict], device: str = "cpu",
                   box_tol: float = DEFAULT_BOX_TOL, score_tol: float = DEFAULT_SCORE_TOL) -> Pairing:
    """Run ``torch_model`` (on ``device``) and ``onnx_model`` (a
    :class:`~sod2.inference.OnnxModel`) on each test-mapper dict of ``inputs`` (one image per
    call) and pair their detections (:func:`pair_detections`), summed over the images."""
    total = Pairing(box_tol=box_tol, score_tol=score_tol)
    for d in inputs:
        with torch.no_grad():
            ref = torch_model([dict(d)])[0]["instances"].to("cpu")
        got = onnx_model([dict(d)])[0]["instances"]
        total = total.add(pair_detections(got, ref, box_tol, score_tol))
    return total


# ------------------------------------------------------------------------------ pipeline
def load_export_tool():
    """tools/export_model.py of this repository as a module (the export as users run it)."""
    path = Path(__file__).resolve().parents[2] / "tools" / "export_model.py"
    if not path.is_file():
        raise UserError(f"export parity needs the repository's tools/export_model.py ({path} not found)")
    spec = importlib.util.spec_from_file_location("_sod2_tool_export_model", str(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_export_parity(config_file: str, workdir: str, *, opts: Sequence[str] = (),
                        image_size: Tuple[int, int] = (640, 640), num_images: int = 2,
                        providers: Sequence[str] = ("CPUExecutionProvider",), device: str = "cpu",
                        seed: int = 0, noise: float = 0.01, calibrate: bool = True, dynamic: bool = False,
                        box_tol: float = DEFAULT_BOX_TOL, score_tol: float = DEFAULT_SCORE_TOL,
                        name: Optional[str] = None) -> List[ParityReport]:
    """The whole check for one config: seeded perturbed weights (:func:`random_model`),
    BatchNorm statistics calibrated on the images (``calibrate``), saved as a checkpoint,
    exported by ``tools/export_model.py`` (its ``export``; fixed size unless ``dynamic``) into
    ``workdir``, then for each ONNX Runtime provider a :class:`ParityReport` of
    :class:`~sod2.inference.OnnxModel` against the PyTorch model (on ``device``) on
    ``num_images`` noise images of ``image_size`` (original size, H x W) through the config's
    test mapper.

    Raises:
        UserError: a provider ONNX Runtime does not offer here, ``device`` "cuda" without a
            CUDA device, a bad config / override, a size or count < 1.
    """
    from detectron2.config import instantiate

    from ..engine.checkpoint import load_for_inference
    from ..engine.lazy_train import load_config
    from ..inference.onnx_model import OnnxModel, import_onnxruntime

    if num_images < 1 or min(image_size) < 1:
        raise UserError(f"export parity: need at least one image of at least 1x1 px, got {num_images} of "
                        f"{image_size[0]}x{image_size[1]}")
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    for p in providers:
        if p not in available:
            raise UserError(f"ONNX Runtime provider {p} is not available here (available: {', '.join(available)}); "
                            "CUDAExecutionProvider / TensorrtExecutionProvider need the onnxruntime-gpu package")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    name = name or os.path.splitext(os.path.basename(config_file))[0]
    t0 = time.perf_counter()
    cfg = load_config(config_file, list(opts))
    images = noise_images(os.path.join(workdir, "images"), num_images, int(image_size[0]), int(image_size[1]), seed)
    mapper = instantiate(cfg.dataloader.test.mapper)
    inputs = [mapper(dict(x)) for x in images]
    if calibrate:  # unit-variance activations: score heads scaled by their fan-in
        model = random_model(cfg, seed, noise, head_std=None, score_heads=SCORE_HEADS)
    else:
        model = random_model(cfg, seed, noise)
    if calibrate:
        calibrate_batchnorm_(model, [dict(d) for d in inputs])
    ckpt = os.path.join(workdir, f"{name}_random.pth")
    torch.save({"model": model.state_dict()}, ckpt)
    out = os.path.join(workdir, name)
    tool = load_export_tool()
    argv = ["--config-file", config_file, "--output", out, "--sample-image", images[0]["file_name"]]
    argv += (["--dynamic"] if dynamic else []) + ["--opts", *opts, f"train.init_checkpoint={ckpt}"]
    meta = tool.export(tool.get_parser().parse_args(argv))
    # the reference: the config's model with the checkpoint the export loaded
    reference = instantiate(cfg.model)
    load_for_inference(reference, ckpt)
    reference.to(device).eval()
    reports = []
    for p in providers:
        t1 = time.perf_counter()
        # what the provider does not run falls back: TensorRT -> CUDA -> CPU
        fallback = ["CUDAExecutionProvider"] if p == "TensorrtExecutionProvider" and "CUDAExecutionProvider" in available else []
        session_providers = [p] + fallback + (["CPUExecutionProvider"] if p != "CPUExecutionProvider" else [])
        onnx_model = OnnxModel(os.path.join(out, meta["model_file"]), providers=session_providers)
        pairing = compare_models(onnx_model, reference, inputs, device, box_tol, score_tol)
        reports.append(ParityReport(
            model=name, family=meta["family"], provider=p, device=device,
            input_size=tuple(int(v) for v in inputs[0]["image"].shape[-2:]), images=len(inputs),
            dynamic=bool(meta["dynamic"]), pairing=pairing, providers=list(onnx_model.providers),
            seconds=time.perf_counter() - (t0 if not reports else t1)))
    return reports
