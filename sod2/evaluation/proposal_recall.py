"""
Class-agnostic proposal recall per size bucket (CFINet's Table 4: AR@300 by SODA-D bucket).

Proposals are the proposal generator's boxes (RPN, CRPN, ...) ranked by objectness and
matched to the ground truth of all classes with pycocotools' greedy rule (what its
``useCats=0`` mode does); AR@k is the recall of the top-k proposals per image averaged over
IoU 0.50:0.95, per bucket of a protocol. Ignored boxes and regions count as in the
protocol (see :func:`sod2.evaluation.evaluator.ground_truth_from_dicts`).
"""
from __future__ import annotations

import logging
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Boxes

from .cocoeval import (Detections, EvalParams, GroundTruth, drop_nonfinite_detections, evaluate_boxes,
                       nonfinite_warning)
from .evaluator import ground_truth_from_dicts
from .protocols import get_protocol

logger = logging.getLogger(__name__)

__all__ = ["collect_proposals", "proposal_recall", "format_recall_table"]


@torch.no_grad()
def collect_proposals(model, data_loader: Iterable, max_proposals: int) -> List[Dict]:
    """Run a GeneralizedRCNN-style model up to its proposal generator.

    Returns:
        per image: ``image_id``, ``boxes`` (P, 4) XYXY in original image pixels, ``scores``
        (P,) objectness logits, at most ``max_proposals`` by decreasing objectness.
    """
    model.eval()
    out = []
    for batch in data_loader:
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features, None)
        for inp, props, (h, w) in zip(batch, proposals, images.image_sizes):
            boxes = Boxes(props.proposal_boxes.tensor.clone())
            H, W = inp.get("height", h), inp.get("width", w)
            boxes.scale(W / w, H / h)
            boxes.clip((H, W))
            scores = props.objectness_logits
            order = torch.argsort(scores, descending=True)[:max_proposals]
            out.append({"image_id": inp["image_id"], "boxes": boxes.tensor[order].cpu().numpy(),
                        "scores": scores[order].cpu().numpy()})
    return out


def proposal_recall(dataset_dicts: Sequence[Dict], proposals: Sequence[Dict], protocol: str = "sodad",
                    max_proposals: Sequence[int] = (100, 300, 1000),
                    area_ranges: Optional[Dict] = None) -> Dict[str, Optional[float]]:
    """AR@k (percent) per bucket: keys ``AR@<k>`` (headline bucket) and ``AR_<bucket>@<k>``.

    Args:
        dataset_dicts: the ground truth (sod2 dataset dicts).
        proposals: :func:`collect_proposals` output for the same images.
    """
    p = get_protocol(protocol).with_overrides(area_ranges=area_ranges)
    regions = {"sodad": "drop"}.get(protocol, "replicate")
    gt = _class_agnostic(dataset_dicts, p.ignore_from, regions)
    index = {iid: i for i, iid in enumerate(gt.image_ids.tolist())}
    n = [len(x["scores"]) for x in proposals]
    xyxy = np.concatenate([x["boxes"] for x in proposals]).reshape(-1, 4) if proposals else np.zeros((0, 4))
    dt = Detections(image=np.repeat([index[x["image_id"]] for x in proposals], n).astype(np.int64),
                    category=np.zeros(len(xyxy), np.int64),
                    boxes=np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]],
                    scores=np.concatenate([x["scores"] for x in proposals]).astype(np.float64)
                    if proposals else np.zeros(0))
    params = EvalParams(area_ranges=dict(p.area_ranges), max_dets=sorted(max_proposals),
                        iou_thresholds=np.array(p.iou_thresholds))
    dt, dropped = drop_nonfinite_detections(dt)
    if dropped:
        logger.warning(nonfinite_warning("proposals", dropped, dropped + len(dt.scores)))
    res = evaluate_boxes(gt, dt, params)
    out: Dict[str, Optional[float]] = {}
    areas = list(p.area_ranges)
    for a, name in enumerate(areas):
        for m, k in enumerate(params.max_dets):
            r = res.recall[:, 0, a, m]
            v = float(r.mean() * 100) if (r > -1).all() else None
            out[f"AR@{k}" if name == p.headline_range else f"AR_{name}@{k}"] = v
    return out


def _class_agnostic(dataset_dicts, ignore_from: str, regions: str) -> GroundTruth:
    """Ground truth of every class as one class."""
    merged = [dict(d, annotations=[dict(a, category_id=0 if a["category_id"] >= 0 else a["category_id"])
                                   for a in d.get("annotations", [])]) for d in dataset_dicts]
    return ground_truth_from_dicts(merged, ["object"], ignore_from=ignore_from, regions=regions)


def format_recall_table(rows: Dict[str, Dict[str, Optional[float]]]) -> str:
    """Markdown table: one row per model, columns the AR entries of the first row."""
    keys = list(next(iter(rows.values())))
    lines = ["| proposals | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join("-" if r.get(k) is None else f"{r[k]:.1f}" for k in keys) + " |")
    return "\n".join(lines)
