#!/usr/bin/env python
"""
Check that sod2's RT-DETR computes what the official RT-DETR computes.

    python tools/check_rtdetr_reference.py --reference-repo /path/to/RT-DETR [--sizes r18 r50]
    python tools/check_rtdetr_reference.py --reference-repo /path/to/RT-DETR --sizes r50 \\
        --weights rtdetr_r50vd_6x_coco_from_paddle.pth

``--reference-repo`` is a clone (or ``git archive`` export) of https://github.com/lyuwenyu/RT-DETR
(or its ``rtdetr_pytorch`` folder); its v1 PyTorch code (``rtdetr_pytorch/src``) is imported
from there at run time and needs ``PyYAML`` and ``scipy``; nothing of it is part of sod2. Its
package ``__init__`` files also import the training data pipeline, which needs torchvision <
0.17 (``torchvision.datapoints``), and the RegNet backbone, which needs ``transformers``. When
that import fails, the script says so and imports the model modules without running the
``__init__`` files of ``src``, ``src.nn`` and ``src.nn.backbone`` (empty package objects stand
in for them; every module that builds or runs the model, ``src.core``, ``src.zoo.rtdetr`` and
``src.nn.backbone.presnet``, is the unmodified reference code). For each size:

1. the reference model and post-processor are built by the reference's own config system
   (``YAMLConfig(configs/rtdetr/rtdetr_<size>_6x_coco.yml)``, with ``PResNet.pretrained``
   False: nothing is downloaded, and ``remap_mscoco_category`` False: labels stay the 0-79
   indices that sod2 predicts, sod2 maps them to COCO ids with the dataset's metadata), in eval
   mode; its state-dict names and shapes are checked against
   ``tests/fixtures/reference-keys/rtdetr_<size>vd.json``;
2. weights: with ``--weights`` an official checkpoint (one size), loaded strictly into the
   reference (``ema.module`` when present, else ``model``, as its ``export_onnx.py``);
   otherwise seeded random weights: every BatchNorm / FrozenBatchNorm gets a random affine and
   the statistics of its input on the test batch, perturbed (arbitrary statistics make the maps
   nearly constant, and every query alike), every LayerNorm a random affine, and every other
   tensor noise on top of its initialisation (half its spread; 0.02 for constant ones: the
   zero-initialised box-head outputs, sampling offsets and attention weights, else every query
   would keep its anchor box and many scores would tie);
3. the random weights are saved as an official checkpoint ``{"ema": {"module": ...},
   "model": ...}`` whose ``model`` entry holds OTHER random weights (so a converter that took
   ``model`` instead of the EMA weights would show here), converted with
   ``sod2.utils.convert`` (the code of ``tools/convert_weights.py rtdetr``) and loaded strictly
   into sod2's model from ``configs/rtdetr/rtdetr_<size>vd_coco.py``;
4. both run in eval mode on one batch of two 640x640 RGB images: (a) random pixels, reported
   at an original size of 480x800 (H x W), and (b) a thermal image of
   tests/fixtures/hituav-subset (640x512) resized to 640x640 (cv2 bilinear; the reference's
   own test transform is a PIL resize, not compared here), reported at its own size; sod2 gets
   the uint8 images with "height"/"width" and preprocesses them itself (RGB / 255: asserted
   equal to the reference's input);
5. the reference's ``RTDETRPostProcessor`` (top-300 over queries x classes, boxes scaled by the
   original sizes) is compared with sod2's output ``Instances`` (``RTDETR.forward`` in eval),
   detection by detection in score order: max |diff| of boxes (original-image pixels; sod2's
   ``Boxes`` are float32, so the reference's boxes are rounded to float32 first) and scores,
   the fraction of equal labels; the fraction of sod2's detections that pair one-to-one with
   a reference detection of the same label, score (``--tol``) and box (``--box-tol``) in any
   order (near-equal scores may swap places when the two computations
   differ in the last bits, e.g. on a GPU); and the raw outputs of the eval decoder layer
   (class logits and normalised cxcywh boxes of the 300 queries, in query order).

Prints one table row per (size, input): the detection counts, max |diff| of boxes and scores
in score order, the fraction of equal labels, the fraction paired, max |diff| of the dense
logits and boxes. Exit status 1 if a count differs, a detection is not paired, or a score,
logit or dense box differs by more than ``--tol``.

Precision (``--dtype``, default float32): both models run in that precision. In float32 all
five sizes give bit-identical detections (sod2's ResNet-vd computes frozen BatchNorm as the
reference does, ``x * scale + bias``: ``AffineFrozenBatchNorm2d``; with Detectron2's
``F.batch_norm`` form the few-ulp differences per layer grew to ~1e-3 in the encoder output
with random weights, enough to swap near-equal anchor scores in the top-300 query selection).
float64 is the stricter check of the arithmetic (the two agree to ~1e-12 there). Runs on the CPU
(``--device cuda`` for a GPU).
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import sys
import tempfile
import types

import numpy as np
import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import sod2  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, REPO)

from detectron2.config import instantiate  # noqa: E402

from sod2.config import get_config  # noqa: E402
from sod2.utils.convert import convert_checkpoint  # noqa: E402

# size -> (reference config, sod2 config, reference-keys fixture)
SIZES = {
    "r18": ("rtdetr_r18vd_6x_coco.yml", "rtdetr/rtdetr_r18vd_coco.py", "rtdetr_r18vd.json"),
    "r34": ("rtdetr_r34vd_6x_coco.yml", "rtdetr/rtdetr_r34vd_coco.py", "rtdetr_r34vd.json"),
    "r50": ("rtdetr_r50vd_6x_coco.yml", "rtdetr/rtdetr_r50vd_coco.py", "rtdetr_r50vd.json"),
    "r50_m": ("rtdetr_r50vd_m_6x_coco.yml", "rtdetr/rtdetr_r50vd_m_coco.py", "rtdetr_r50vd_m.json"),
    "r101": ("rtdetr_r101vd_6x_coco.yml", "rtdetr/rtdetr_r101vd_coco.py", "rtdetr_r101vd.json"),
}
INPUT = 640


def import_reference(repo: str):
    """The reference's ``src.core`` (YAMLConfig and the registry) with the RT-DETR modules
    registered (module docstring). Returns (src.core, the rtdetr_pytorch folder, a note on
    how it was imported or None)."""
    root = repo if os.path.isdir(os.path.join(repo, "src", "zoo", "rtdetr")) else os.path.join(repo, "rtdetr_pytorch")
    if not os.path.isfile(os.path.join(root, "src", "zoo", "rtdetr", "rtdetr_decoder.py")):
        raise FileNotFoundError(f"{repo} is not an RT-DETR clone (no rtdetr_pytorch/src/zoo/rtdetr)")
    root = os.path.abspath(root)
    if "src" in sys.modules and list(getattr(sys.modules["src"], "__path__", [])) != [os.path.join(root, "src")]:
        raise RuntimeError("another package named 'src' is already imported")
    sys.path.insert(0, root)
    note = None
    try:
        import src  # noqa: F401  (the reference's own package, all of it)
        import src.core  # noqa: F401
    except ImportError as e:
        note = (f"the reference's package __init__ files fail here ({type(e).__name__}: {e}); importing "
                "src.core, src.zoo.rtdetr and src.nn.backbone.presnet without running the __init__ "
                "files of src, src.nn and src.nn.backbone (data pipeline, RegNet/DLA backbones)")
        for name in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
            del sys.modules[name]
        for name in ("src", "src.nn", "src.nn.backbone"):
            pkg = types.ModuleType(name)
            pkg.__path__ = [os.path.join(root, *name.split("."))]
            sys.modules[name] = pkg
        import src.core  # noqa: F401
        import src.nn.backbone.presnet  # noqa: F401
        import src.zoo.rtdetr  # noqa: F401
    return sys.modules["src.core"], root, note


def build_reference(core, root: str, size: str, seed: int):
    """The reference RTDETR and RTDETRPostProcessor from its YAML config (eval mode; its
    initialisation drawn from torch's global generator seeded with ``seed``)."""
    torch.manual_seed(seed)
    cfg = core.YAMLConfig(os.path.join(root, "configs", "rtdetr", SIZES[size][0]),
                          PResNet={"pretrained": False}, remap_mscoco_category=False)
    model, post = cfg.model, cfg.postprocessor
    with open(os.path.join(REPO, "tests", "fixtures", "reference-keys", SIZES[size][2])) as f:
        keys = json.load(f)["keys"]
    sd = model.state_dict()
    if set(sd) != set(keys) or any(list(sd[k].shape) != keys[k] for k in keys):
        raise RuntimeError(f"the reference {size} model does not have the names/shapes of {SIZES[size][2]}")
    return model.eval(), post.eval()


def randomize(model: nn.Module, seed: int, calibration: torch.Tensor) -> None:
    """Random 'trained-looking' weights in place (module docstring, step 2). The statistics of
    every (Frozen)BatchNorm are those of its input on ``calibration`` (a batch of images),
    perturbed, so that activations keep their spatial variation through the network (with
    arbitrary statistics the maps become nearly constant and every query the same)."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) or type(m).__name__ == "FrozenBatchNorm2d"]

    def calibrate(m, args):
        x = args[0]
        n = x.shape[1]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        m.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(n, generator=g))
        m.running_var.copy_(var * (0.8 + 0.4 * torch.rand(n, generator=g)) + 1e-3)

    with torch.no_grad():
        done = set()
        for m in norms:
            n = m.weight.numel()
            m.weight.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.copy_(0.2 * torch.randn(n, generator=g))
            done.update(id(t) for t in (m.weight, m.bias))
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(1.0 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                done.update((id(m.weight), id(m.bias)))
        for p in model.parameters():
            if id(p) in done or not p.is_floating_point():
                continue
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=g) * (0.5 * spread if spread > 0 else 0.02))
        hooks = [m.register_forward_pre_hook(calibrate) for m in norms]
        try:
            model.eval()(calibration)
        finally:
            for h in hooks:
                h.remove()


def build_sod2(size: str, checkpoint: str, device: str) -> nn.Module:
    cfg = get_config(SIZES[size][1])
    model = instantiate(cfg.model)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    return model.to(device).eval()


def load_official(path: str):
    """The state dict the reference itself would take from an official checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt["ema"]["module"] if "ema" in ckpt else ckpt["model"]


def inputs(seed: int, image: str):
    """[(name, uint8 (3, 640, 640) RGB, (H0, W0))] for the random and the real image."""
    import cv2
    g = torch.Generator().manual_seed(seed)
    rand = torch.randint(0, 256, (3, INPUT, INPUT), generator=g, dtype=torch.uint8)
    bgr = cv2.imread(image)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (INPUT, INPUT), interpolation=cv2.INTER_LINEAR)
    real = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).contiguous()
    return [("random", rand, (480, 800)), ("real", real, tuple(bgr.shape[:2]))]


@torch.no_grad()
def run_sod2(model, cases, device):
    """sod2's detections (its forward in eval) and the eval layer's raw outputs (a hook on
    the decoder), and the network input."""
    batched = [{"image": img, "height": h, "width": w} for _, img, (h, w) in cases]
    captured = {}
    hook = model.decoder.register_forward_hook(lambda mod, args, out: captured.setdefault("out", out))
    try:
        results = model(batched)
    finally:
        hook.remove()
    out = captured["out"]
    num_dn = int(out.num_denoising)
    layer = out.layers[-1]
    net_in = model.preprocess_image(batched).tensor
    return [r["instances"].to("cpu") for r in results], layer.logits[:, num_dn:].cpu(), \
        layer.boxes[:, num_dn:].cpu(), net_in


@torch.no_grad()
def run_reference(model, post, x, orig_sizes_hw):
    out = model(x)
    sizes = torch.tensor([[w, h] for h, w in orig_sizes_hw], device=x.device)  # the reference's orig_size is (w, h)
    dets = post(out, sizes)
    return [{k: v.cpu() for k, v in d.items()} for d in dets], out["pred_logits"].cpu(), out["pred_boxes"].cpu()


def match(ref_det, det, tol: float, box_tol: float) -> float:
    """Fraction of sod2's detections paired one-to-one (greedily, in score order) with a
    reference detection of the same label, a score within ``tol`` and a box within ``box_tol``:
    insensitive to the order of near-equal scores, which the top-K may swap when the two
    computations differ in the last bits."""
    if len(det) == 0:
        return 1.0 if len(ref_det["scores"]) == 0 else 0.0
    used = torch.zeros(len(ref_det["scores"]), dtype=torch.bool)
    index = torch.arange(len(used))
    paired = 0
    for box, score, label in zip(det.pred_boxes.tensor, det.scores, det.pred_classes):
        cand = ~used & (ref_det["labels"] == label) & ((ref_det["scores"] - score).abs() <= tol)
        if cand.any():
            dist = (ref_det["boxes"][cand] - box).abs().max(1).values
            if dist.min() <= box_tol:
                used[index[cand][dist.argmin()]] = True
                paired += 1
    return paired / len(det)


def compare(ref_det, det, ref_logits, logits, ref_boxes, boxes, tol, box_tol):
    # Detectron2's Boxes hold float32: the reference's boxes are rounded the same way
    ref_det = dict(ref_det, boxes=ref_det["boxes"].to(det.pred_boxes.tensor.dtype))
    n_ref, n = len(ref_det["scores"]), len(det)
    k = min(n_ref, n)
    return {
        "n_ref": n_ref, "n_sod2": n,
        "box": (ref_det["boxes"][:k] - det.pred_boxes.tensor[:k]).abs().max().item(),
        "score": (ref_det["scores"][:k] - det.scores[:k]).abs().max().item(),
        "label": (ref_det["labels"][:k] == det.pred_classes[:k]).float().mean().item(),
        "matched": match(ref_det, det, tol, box_tol),
        "logits": (ref_logits - logits).abs().max().item(),
        "dense_box": (ref_boxes - boxes).abs().max().item(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--reference-repo", required=True, help="clone or export of lyuwenyu/RT-DETR")
    p.add_argument("--sizes", nargs="+", default=["r18", "r50"], choices=list(SIZES))
    p.add_argument("--weights", default=None,
                   help="an official RT-DETR checkpoint (.pth) of the one size given, instead of random weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image", default=None, help="a real image (default: the first HIT-UAV fixture)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float64", "float32"],
                   help="both models and the input in this precision (module docstring: float32 "
                        "differences in the last bits can change which queries the top-K selects)")
    p.add_argument("--tol", type=float, default=1e-3, help="for scores, logits and normalised boxes")
    p.add_argument("--box-tol", type=float, default=1e-2, help="for boxes in original-image pixels")
    args = p.parse_args(argv)
    if args.weights and len(args.sizes) != 1:
        print("check_rtdetr_reference: error: --weights needs exactly one size", file=sys.stderr)
        return 1
    if args.weights and not os.path.isfile(args.weights):
        print(f"check_rtdetr_reference: error: no such checkpoint file: {args.weights}", file=sys.stderr)
        return 1
    try:
        core, root, note = import_reference(args.reference_repo)
    except (FileNotFoundError, RuntimeError) as e:
        print(f"check_rtdetr_reference: error: {e}", file=sys.stderr)
        return 1
    if note:
        print(f"note: {note}")

    image = args.image or sorted(glob.glob(os.path.join(REPO, "tests/fixtures/hituav-subset/hit-uav/*/*.jpg")))[0]
    cases = inputs(args.seed + 2, image)
    print(f"weights: {args.weights or f'random (seed {args.seed})'}; device {args.device}")
    print(f"inputs (one batch): random 640x640 reported at 480x800; "
          f"{os.path.relpath(image, REPO) if image.startswith(REPO) else image} resized to 640x640, "
          f"reported at {cases[1][2][0]}x{cases[1][2][1]}")
    header = f"{'size':6} {'input':7} {'n_ref':>5} {'n_sod2':>6} {'max|box|':>10} {'max|score|':>10} " \
             f"{'labels eq':>9} {'matched':>7} {'max|logit|':>10} {'max|qbox|':>10}"
    print(header)
    print("-" * len(header))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ref, post = build_reference(core, root, size, args.seed)
            dst = os.path.join(tmp, f"sod2_{size}.pth")
            x = torch.stack([img for _, img, _ in cases]).float() / 255.0
            if args.weights:
                try:
                    ref.load_state_dict(load_official(args.weights), strict=True)
                except (RuntimeError, KeyError) as e:
                    print(f"check_rtdetr_reference: error: {args.weights} does not load into the reference {size} "
                          f"model (another size?): {str(e).splitlines()[0][:200]}", file=sys.stderr)
                    return 1
                src = args.weights
            else:
                other = copy.deepcopy(ref)
                randomize(ref, args.seed, x)
                randomize(other, args.seed + 1, x)
                src = os.path.join(tmp, f"rtdetr_{size}.pth")
                torch.save({"ema": {"module": ref.state_dict(), "updates": 1}, "model": other.state_dict(),
                            "last_epoch": 0}, src)
                del other
            convert_checkpoint("rtdetr", src, dst)
            dtype = getattr(torch, args.dtype)
            model = build_sod2(size, dst, args.device).to(dtype)
            ref = ref.to(device=args.device, dtype=dtype)
            dets, logits, boxes, net_in = run_sod2(model, cases, args.device)
            x = torch.stack([img for _, img, _ in cases]).to(device=args.device, dtype=dtype) / 255.0
            assert torch.equal(net_in, x), "network inputs differ"
            ref_dets, ref_logits, ref_boxes = run_reference(ref, post, x, [c[2] for c in cases])
            for i, (name, _, _) in enumerate(cases):
                r = compare(ref_dets[i], dets[i], ref_logits[i], logits[i], ref_boxes[i], boxes[i], args.tol,
                            args.box_tol)
                print(f"{size:6} {name:7} {r['n_ref']:>5} {r['n_sod2']:>6} {r['box']:>10.2e} {r['score']:>10.2e} "
                      f"{r['label']:>9.4f} {r['matched']:>7.4f} {r['logits']:>10.2e} {r['dense_box']:>10.2e}")
                ok &= r["n_ref"] == r["n_sod2"] > 0 and r["matched"] == 1.0 \
                    and max(r["score"], r["logits"], r["dense_box"]) <= args.tol
            del ref, model
    print("OK: same detections" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
