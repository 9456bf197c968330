#!/usr/bin/env python
"""
Check that sod2's YOLOX computes what the official YOLOX computes.

    python tools/check_yolox_reference.py --reference-repo /path/to/YOLOX [--sizes s nano]

``--reference-repo`` is a clone of https://github.com/Megvii-BaseDetection/YOLOX (its
``yolox`` package is imported from there at run time; it needs ``loguru``, ``psutil`` and
``opencv-python``; nothing of it is part of sod2). For each size:

1. the reference ``YOLOX(YOLOPAFPN, YOLOXHead)`` is built as its Exp does (BN eps 1e-3,
   momentum 0.03, prior bias), with seeded random weights, and random BN statistics and
   affine parameters (so that BN is not the identity);
2. the prediction biases are perturbed in the reference BEFORE saving, so both models get
   the same weights: with the prior bias (-4.6) random weights score ~1e-4 and nothing
   passes the 0.01 threshold, so the obj bias is set to ``--obj-bias`` (-3.5) and the cls
   bias to ``--cls-bias`` (-1), which puts the scores around the threshold, and the w/h
   biases of the box outputs to ``--wh-bias`` (2: boxes ~7 strides wide) so that neighbours
   overlap and NMS removes about half of what passes the threshold;
3. its state dict is saved as an official checkpoint ``{"model": ...}``, converted with
   ``sod2.utils.convert`` (the code of ``tools/convert_weights.py``) and loaded strictly into
   sod2's model from ``configs/yolox/yolox_<size>_coco.py``;
4. both run in eval mode on (a) a random 640x640 (416 for nano/tiny) BGR 0-255 image and
   (b) an image file (default: a thermal image of tests/fixtures/hituav-subset), each model
   through its own test path: the reference's evaluation input from its own functions
   (``COCODataset.load_resized_img``, then ``ValTransform``), sod2's from the config's test
   mapper (``YOLOXTestResize``) and ``model.preprocess_image``; the two network inputs must be
   equal pixel for pixel;
5. the reference's ``postprocess`` (conf 0.01, NMS 0.65, class-wise) is compared with sod2's
   ``YOLOX.inference`` (same thresholds; boxes in network-input pixels), detection by
   detection in score order, and the raw dense outputs (decoded boxes, obj and cls
   probabilities) are compared as well; for (b), the boxes of the reference's
   ``COCOEvaluator.convert_to_coco_format`` (divided by the letterbox ratio, COCO xywh) are
   compared with those of sod2's full forward (the config's mapping back to the image).

Prints one table row per (size, input): the count above the score threshold (before NMS),
detection counts, max |diff| of boxes, scores, boxes in the original image (``max|img box|``,
(b) only) and dense outputs, and the fraction of equal classes. Exit status 1 if a count
differs or a difference exceeds ``--tol``; 2 with one line ``error: ...`` for unusable input
(not a YOLOX clone, an unreadable image).
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
from types import SimpleNamespace

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
from sod2.errors import UserError  # noqa: E402
from sod2.utils.convert import convert_checkpoint  # noqa: E402

SIZES = {"nano": (0.33, 0.25, True, 416), "tiny": (0.33, 0.375, False, 416), "s": (0.33, 0.50, False, 640),
         "m": (0.67, 0.75, False, 640), "l": (1.0, 1.0, False, 640), "x": (1.33, 1.25, False, 640)}


def build_reference(yolox_models, size: str, seed: int, obj_bias: float, cls_bias: float,
                    wh_bias: float) -> nn.Module:
    depth, width, depthwise, _ = SIZES[size]
    torch.manual_seed(seed)
    in_channels = [256, 512, 1024]
    backbone = yolox_models.YOLOPAFPN(depth, width, in_channels=in_channels, depthwise=depthwise, act="silu")
    head = yolox_models.YOLOXHead(80, width, in_channels=in_channels, depthwise=depthwise, act="silu")
    model = yolox_models.YOLOX(backbone, head)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):  # as the reference Exp does, then random statistics
            m.eps, m.momentum = 1e-3, 0.03
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = 0.2 * torch.randn(n, generator=g)
            m.running_mean = 0.2 * torch.randn(n, generator=g)
            m.running_var = 0.5 + torch.rand(n, generator=g)
    model.head.initialize_biases(1e-2)
    for conv in model.head.cls_preds:
        conv.bias.data.fill_(cls_bias)
    for conv in model.head.obj_preds:
        conv.bias.data.fill_(obj_bias)
    for conv in model.head.reg_preds:
        conv.bias.data[2:] = wh_bias
    return model.eval()


def build_sod2(size: str, checkpoint: str) -> nn.Module:
    """sod2's model (the config's: no detection cap, boxes not clipped) and test mapper."""
    cfg = get_config(f"yolox/yolox_{size}_coco.py")
    model = instantiate(cfg.model)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    return model.eval(), instantiate(cfg.dataloader.test.mapper)


def official_eval_input(img: np.ndarray, size: int) -> torch.Tensor:
    """The official evaluation's (1, 3, size, size) network input of an (H, W, 3) BGR image,
    from the reference's own functions: ``COCODataset(img_size=test_size)`` resizes it
    (``load_resized_img``), then ``ValTransform`` letterboxes it (``preproc``)."""
    from yolox.data import COCODataset, ValTransform
    dataset = SimpleNamespace(img_size=(size, size), load_image=lambda index: img)
    resized = COCODataset.load_resized_img(dataset, 0)
    x, _ = ValTransform(legacy=False)(resized, None, (size, size))
    return torch.from_numpy(x)[None]


def official_image_boxes(ref_det, img_h: int, img_w: int, size: int) -> torch.Tensor:
    """(D, 4) COCO xywh boxes of the reference's ``COCOEvaluator.convert_to_coco_format``."""
    from yolox.evaluators import COCOEvaluator
    evaluator = SimpleNamespace(img_size=(size, size),
                                dataloader=SimpleNamespace(dataset=SimpleNamespace(class_ids=list(range(80)))))
    rows = COCOEvaluator.convert_to_coco_format(evaluator, [ref_det.clone()], [[img_h], [img_w]], [0])
    return torch.tensor([r["bbox"] for r in rows], dtype=torch.float32).reshape(-1, 4)


@torch.no_grad()
def sod2_outputs(model, inputs: dict):
    """sod2's dense outputs and detections (network-input pixels, unclipped) for one input."""
    images = model.preprocess_image([inputs])
    feats = model.backbone(images.tensor)
    feats = [feats[f] for f in model.head_in_features]
    head = model.head(feats)
    preds = model.decode(head.cls_logits, head.reg, head.obj_logits)
    det = model.forward_inference(images, feats, head)[0]  # YOLOX's own inference step
    dense = torch.cat([preds.boxes[0], preds.obj_logits[0].sigmoid()[:, None], preds.cls_logits[0].sigmoid()], 1)
    return dense, det, images.tensor


@torch.no_grad()
def reference_outputs(model, postprocess, x: torch.Tensor, conf: float, nms: float):
    out = model(x)  # (1, A, 85): cx, cy, w, h, obj, cls
    dense = out[0].clone()
    cx, cy, w, h = dense[:, :4].unbind(1)
    dense[:, :4] = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    det = postprocess(out.clone(), 80, conf, nms, class_agnostic=False)[0]
    return dense, det


def compare(ref_dense, ref_det, dense, det):
    n_ref = 0 if ref_det is None else ref_det.shape[0]
    n = len(det)
    row = {"n_ref": n_ref, "n_sod2": n, "dense": (ref_dense - dense).abs().max().item(), "img_box": None}
    k = min(n_ref, n)
    if k:
        ref_boxes, ref_scores = ref_det[:k, :4], ref_det[:k, 4] * ref_det[:k, 5]
        ref_cls = ref_det[:k, 6].long()
        row["box"] = (ref_boxes - det.pred_boxes.tensor[:k]).abs().max().item()
        row["score"] = (ref_scores - det.scores[:k]).abs().max().item()
        row["cls"] = (ref_cls == det.pred_classes[:k]).float().mean().item()
    else:
        row.update(box=0.0, score=0.0, cls=1.0)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--reference-repo", required=True, help="clone of Megvii-BaseDetection/YOLOX")
    p.add_argument("--sizes", nargs="+", default=["s", "nano"], choices=sorted(SIZES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--obj-bias", type=float, default=-3.5,
                   help="obj prediction bias set in BOTH models (the prior bias -4.6 leaves nothing "
                        "above conf 0.01 with random weights)")
    p.add_argument("--cls-bias", type=float, default=-1.0, help="cls prediction bias set in BOTH models")
    p.add_argument("--wh-bias", type=float, default=2.0, help="w/h box-output bias set in BOTH models")
    p.add_argument("--conf", type=float, default=0.01)
    p.add_argument("--nms", type=float, default=0.65)
    p.add_argument("--image", default=None, help="a real image (default: the first HIT-UAV fixture)")
    p.add_argument("--tol", type=float, default=1e-3)
    args = p.parse_args(argv)

    try:
        return run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    if not os.path.isdir(os.path.join(args.reference_repo, "yolox", "models")):
        raise UserError(f"{args.reference_repo}: not a YOLOX clone (no yolox/models)")
    sys.path.insert(0, os.path.abspath(args.reference_repo))
    import yolox.models as yolox_models
    from yolox.utils import postprocess

    image = args.image or sorted(glob.glob(os.path.join(REPO, "tests/fixtures/hituav-subset/hit-uav/*/*.jpg")))[0]
    import cv2
    if not os.path.isfile(image):
        raise UserError(f"{image}: image file not found")
    real = cv2.imread(image)  # BGR, as the reference reads it
    if real is None:
        raise UserError(f"{image}: cannot read the image")
    print(f"random weights (seed {args.seed}); prediction biases set in BOTH models: obj {args.obj_bias}, "
          f"cls {args.cls_bias}, box w/h {args.wh_bias} (else nothing would pass conf {args.conf})")
    print(f"real image: {os.path.relpath(image, REPO) if image.startswith(REPO) else image} {real.shape[1]}x{real.shape[0]}")
    header = f"{'size':5} {'input':12} {'n_pass':>6} {'n_ref':>6} {'n_sod2':>6} {'max|box|':>10} {'max|score|':>10} " \
             f"{'cls equal':>9} {'max|dense|':>10} {'max|img box|':>12}"
    print(header)
    print("-" * len(header))
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ref = build_reference(yolox_models, size, args.seed, args.obj_bias, args.cls_bias, args.wh_bias)
            src, dst = os.path.join(tmp, f"yolox_{size}.pth"), os.path.join(tmp, f"sod2_{size}.pth")
            torch.save({"model": ref.state_dict(), "start_epoch": 0}, src)
            convert_checkpoint("yolox", src, dst)
            model, mapper = build_sod2(size, dst)
            model.test_score_thresh, model.test_nms_thresh = args.conf, args.nms
            s = SIZES[size][3]
            g = torch.Generator().manual_seed(args.seed + 2)
            rand = torch.randint(0, 256, (3, s, s), generator=g, dtype=torch.uint8)
            h, w = real.shape[:2]
            cases = [("random", {"image": rand}, rand.float()[None]),
                     ("image file", mapper({"file_name": image, "height": h, "width": w, "image_id": 0}),
                      official_eval_input(real, s))]
            for name, sod2_in, ref_in in cases:
                dense, det, net_in = sod2_outputs(model, sod2_in)
                if not torch.equal(net_in, ref_in):
                    diff = "shapes differ" if net_in.shape != ref_in.shape else \
                        f"max |diff| {(net_in - ref_in).abs().max().item()}"
                    print(f"{size:5} {name:12} network inputs differ ({tuple(net_in.shape)} / "
                          f"{tuple(ref_in.shape)}, {diff})")
                    ok = False
                    continue
                ref_dense, ref_det = reference_outputs(ref, postprocess, ref_in, args.conf, args.nms)
                r = compare(ref_dense, ref_det, dense, det)
                if "file_name" in sod2_in and r["n_ref"] == r["n_sod2"] and r["n_ref"]:
                    with torch.no_grad():
                        ours = model([sod2_in])[0]["instances"].pred_boxes.tensor
                    ours = torch.cat([ours[:, :2], ours[:, 2:] - ours[:, :2]], 1)  # COCO xywh
                    r["img_box"] = (official_image_boxes(ref_det, h, w, s) - ours).abs().max().item()
                n_pass = int(((ref_dense[:, 4] * ref_dense[:, 5:].max(1).values) >= args.conf).sum())
                img_box = "-" if r["img_box"] is None else f"{r['img_box']:.2e}"
                print(f"{size:5} {name:12} {n_pass:>6} {r['n_ref']:>6} {r['n_sod2']:>6} {r['box']:>10.2e} {r['score']:>10.2e} "
                      f"{r['cls']:>9.4f} {r['dense']:>10.2e} {img_box:>12}")
                if r["n_ref"] == 0:
                    print("  (no detections: the comparison is vacuous; change the biases)")
                ok &= r["n_ref"] > 0 and r["n_ref"] == r["n_sod2"] and max(r["box"], r["score"], r["dense"]) <= args.tol \
                    and r["cls"] == 1.0 and (r["img_box"] or 0.0) <= args.tol
    print("OK: same detections" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
