"""
Scale-bucket evaluation protocols: coco, aitod, sodad, tinyperson, visdrone (README.md,
"Evaluation", lists each with its reference evaluator, buckets and headline).

A :class:`Protocol` fixes the area buckets, maxDets, IoU thresholds, how ground truth
becomes "ignored", and which numbers are the headline. :func:`summarize` turns an
:class:`~sod2.evaluation.cocoeval.EvalResult` into Detectron2-style metrics in percent:

* ``AP``: the protocol's headline (COCO: all @100; AI-TOD: all @1500; SODA-D: Small
  @100; TinyPerson: AP50 on tiny @200);
* ``AP50``, ``AP75`` (and ``AP25`` where 0.25 is a threshold) on the headline range;
* ``AP_<bucket>`` for every other bucket (TinyPerson: at IoU 0.5, as it reports them);
* ``AR@<m>`` for every maxDets m on the headline range;
* ``AR_<bucket>`` at the largest maxDets;
* ``AP-<class>``: per class, at the headline range (and maxDets the reference's
  per-class table uses);
* TinyPerson also: ``MR`` (log-average miss rate on tiny at IoU 0.5, its second headline),
  ``MR25``, ``MR75``, ``MR_<setup>`` (see :mod:`sod2.evaluation.miss_rate`).

A value is ``None`` when its bucket has no ground truth (pycocotools' -1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cocoeval import (Detections, EvalParams, EvalResult, GroundTruth, coco_iou_thresholds,
                       evaluate_boxes)
from .miss_rate import MR_SETUPS, miss_rates
from .visdrone import VISDRONE_MAX_DETS, evaluate_visdrone

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "summarize", "evaluate_protocol",
           "format_table", "format_class_table"]

_BIG = 1e10


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol.

    Attributes:
        name: protocol name.
        area_ranges: bucket name -> (lo, hi) area in px^2, inclusive bounds.
        headline_range: the bucket of ``AP``, ``AP50``, ``AP75`` and ``AR@m``.
        max_dets: maxDets list (increasing).
        headline_max_dets: maxDets of ``AP`` and ``AP_<bucket>``.
        class_max_dets: maxDets of the per-class table.
        iou_thresholds: IoU thresholds.
        ignore_from: which ground-truth flags mean "ignored" (see
            :func:`sod2.evaluation.coco_json.ground_truth_from_coco`).
        iod_ignore: TinyPerson's IoD fallback for unmatched detections.
        headline_iou: if set, ``AP`` and ``AP_<bucket>`` are taken at this IoU only.
    """

    name: str
    area_ranges: Dict[str, Tuple[float, float]]
    headline_range: str
    max_dets: Tuple[int, ...]
    headline_max_dets: int
    class_max_dets: int
    iou_thresholds: Tuple[float, ...] = field(default_factory=lambda: tuple(coco_iou_thresholds()))
    ignore_from: str = "iscrowd"
    iod_ignore: bool = False
    headline_iou: Optional[float] = None

    def params(self) -> EvalParams:
        return EvalParams(area_ranges=dict(self.area_ranges), max_dets=list(self.max_dets),
                          iou_thresholds=np.array(self.iou_thresholds, dtype=np.float64),
                          iod_ignore=self.iod_ignore)

    def with_overrides(self, area_ranges: Optional[Dict[str, Tuple[float, float]]] = None,
                       max_dets: Optional[Sequence[int]] = None,
                       iou_thresholds: Optional[Sequence[float]] = None) -> "Protocol":
        """The same matching semantics with custom buckets, maxDets or IoU thresholds.

        Custom ``area_ranges`` replace the buckets; an ``all`` bucket (the protocol's own,
        or [0, 1e10]) is implied and becomes the headline. Custom ``max_dets`` make the
        largest one the headline maxDets.
        """
        p = self
        if area_ranges is not None:
            ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in area_ranges.items()}
            if "all" not in ranges:
                ranges = {"all": self.area_ranges.get("all", (0.0, _BIG)), **ranges}
            p = replace(p, area_ranges=ranges, headline_range="all")
        if max_dets is not None:
            md = tuple(sorted(int(m) for m in max_dets))
            p = replace(p, max_dets=md, headline_max_dets=md[-1], class_max_dets=md[-1])
        if iou_thresholds is not None:
            thr = tuple(float(t) for t in iou_thresholds)
            if not all(0 < t <= 1 for t in thr):
                raise ValueError(f"IoU thresholds must be in (0, 1], got {thr}")
            hi = p.headline_iou if p.headline_iou in thr else None
            p = replace(p, iou_thresholds=thr, headline_iou=hi)
        return p


PROTOCOLS: Dict[str, Protocol] = {
    "coco": Protocol(
        name="coco",
        area_ranges={"all": (0, 1e5 ** 2), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2),
                     "large": (96 ** 2, 1e5 ** 2)},
        headline_range="all", max_dets=(1, 10, 100), headline_max_dets=100, class_max_dets=100),
    "aitod": Protocol(
        name="aitod",
        area_ranges={"all": (0, _BIG), "verytiny": (0, 8 ** 2), "tiny": (8 ** 2, 16 ** 2),
                     "small": (16 ** 2, 32 ** 2), "medium": (32 ** 2, _BIG)},
        headline_range="all", max_dets=(100, 300, 1500), headline_max_dets=1500,
        class_max_dets=1500),
    "sodad": Protocol(
        name="sodad",
        area_ranges={"Small": (0, 32 ** 2), "eS": (0, 12 ** 2), "rS": (12 ** 2, 20 ** 2),
                     "gS": (20 ** 2, 32 ** 2), "Normal": (32 ** 2, 40 * 50)},
        headline_range="Small", max_dets=(100, 300, 1000), headline_max_dets=100,
        class_max_dets=1000, ignore_from="ignore"),
    "tinyperson": Protocol(
        name="tinyperson",
        area_ranges={"all": (1, _BIG), "tiny": (1, 20 ** 2), "tiny1": (1, 8 ** 2),
                     "tiny2": (8 ** 2, 12 ** 2), "tiny3": (12 ** 2, 20 ** 2),
                     "small": (20 ** 2, 32 ** 2), "reasonable": (32 ** 2, _BIG)},
        headline_range="tiny", max_dets=(200,), headline_max_dets=200, class_max_dets=200,
        iou_thresholds=(0.25, 0.5, 0.75), ignore_from="ignore_or_crowd", iod_ignore=True,
        headline_iou=0.5),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown evaluation protocol {name!r}; choose from "
                       f"{sorted(PROTOCOLS) + ['visdrone']}") from None


def _mean_valid(x: np.ndarray) -> Optional[float]:
    v = x[x > -1]
    return float(np.mean(v)) if v.size else None


def _iou_index(thresholds: np.ndarray, t: float) -> Optional[int]:
    idx = np.flatnonzero(np.abs(thresholds - t) < 1e-9)
    return int(idx[0]) if idx.size else None


def summarize(result: EvalResult, protocol: Protocol,
              class_names: Optional[Sequence[str]] = None) -> Dict[str, Optional[float]]:
    """Detectron2-style metrics in percent (see module docstring).

    Args:
        result: ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M) from
            :func:`~sod2.evaluation.cocoeval.evaluate_boxes` run with ``protocol.params()``.
        class_names: K names for ``AP-<class>`` entries; None skips them.
    """
    prec, rec = result.precision, result.recall
    areas = list(result.params.area_ranges)
    md = list(result.params.max_dets)
    thr = result.params.iou_thresholds
    a0 = areas.index(protocol.headline_range)
    m0 = md.index(protocol.headline_max_dets)
    t_head = None if protocol.headline_iou is None else _iou_index(thr, protocol.headline_iou)
    t_sel = slice(None) if t_head is None else slice(t_head, t_head + 1)

    def pct(v):
        return None if v is None else 100.0 * v

    out: Dict[str, Optional[float]] = {"AP": pct(_mean_valid(prec[t_sel, :, :, a0, m0]))}
    for name, t in (("AP25", 0.25), ("AP50", 0.5), ("AP75", 0.75)):
        ti = _iou_index(thr, t)
        if ti is not None:
            out[name] = pct(_mean_valid(prec[ti, :, :, a0, m0]))
    for a, name in enumerate(areas):
        if a != a0:
            out[f"AP_{name}"] = pct(_mean_valid(prec[t_sel, :, :, a, m0]))
    for m, n in enumerate(md):
        out[f"AR@{n}"] = pct(_mean_valid(rec[:, :, a0, m]))
    for a, name in enumerate(areas):
        if a != a0:
            out[f"AR_{name}"] = pct(_mean_valid(rec[:, :, a, len(md) - 1]))
    if class_names is not None:
        mc = md.index(protocol.class_max_dets) if protocol.class_max_dets in md else len(md) - 1
        for k, cname in enumerate(class_names):
            out[f"AP-{cname}"] = pct(_mean_valid(prec[t_sel, :, k, a0, mc]))
    return out


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def format_table(metrics: Dict[str, Optional[float]], title: str = "") -> str:
    """Two-row text table of the non-per-class metrics."""
    keys = [k for k in metrics if not k.startswith("AP-")]
    widths = [max(len(k), len(_fmt(metrics[k]))) for k in keys]
    head = " | ".join(k.rjust(w) for k, w in zip(keys, widths))
    vals = " | ".join(_fmt(metrics[k]).rjust(w) for k, w in zip(keys, widths))
    rule = "-" * len(head)
    return "\n".join(x for x in (title, head, rule, vals) if x)


def format_class_table(metrics: Dict[str, Optional[float]], columns: int = 3) -> str:
    """Per-class AP table (``AP-<class>`` entries), ``columns`` classes per row."""
    items = [(k[3:], _fmt(v)) for k, v in metrics.items() if k.startswith("AP-")]
    if not items:
        return ""
    wn = max(len("category"), *(len(n) for n, _ in items))
    wv = max(len("AP"), *(len(v) for _, v in items))
    rows: List[str] = []
    header = " | ".join(["category".ljust(wn) + " | " + "AP".rjust(wv)] * min(columns, len(items)))
    rows.append(header)
    rows.append("-" * len(header))
    for i in range(0, len(items), columns):
        chunk = items[i:i + columns]
        rows.append(" | ".join(n.ljust(wn) + " | " + v.rjust(wv) for n, v in chunk))
    return "\n".join(rows)


def evaluate_protocol(gt: GroundTruth, dt: Detections, protocol,
                      area_ranges: Optional[Dict[str, Tuple[float, float]]] = None,
                      max_dets: Optional[Sequence[int]] = None,
                      iou_thresholds: Optional[Sequence[float]] = None,
                      per_class: bool = True) -> Dict[str, Optional[float]]:
    """Evaluate with a protocol (a name from :data:`PROTOCOLS`, ``"visdrone"``, or a
    :class:`Protocol`) and optional overrides; returns :func:`summarize`-style metrics."""
    names = gt.category_names if per_class else None
    if protocol == "visdrone":
        if area_ranges:
            raise ValueError("the visdrone protocol has no area buckets (use 'coco' or 'aitod')")
        if gt.image_sizes is None or gt.regions is None:
            raise ValueError("the visdrone protocol needs image sizes and ignored regions")
        res = evaluate_visdrone(gt, dt, gt.image_sizes, gt.regions,
                                max_dets=max_dets or VISDRONE_MAX_DETS,
                                iou_thresholds=iou_thresholds)
        out = dict(res["metrics"])
        if names is not None:
            for k, cname in enumerate(names):
                out[f"AP-{cname}"] = float(res["AP"][k].mean()) if res["class_weight"][k] else None
        return _checked(out)
    p = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    p = p.with_overrides(area_ranges=area_ranges, max_dets=max_dets, iou_thresholds=iou_thresholds)
    out = summarize(evaluate_boxes(gt, dt, p.params()), p, names)
    if p.name == "tinyperson" and area_ranges is None and iou_thresholds is None:
        out = _with_miss_rates(out, gt, dt)
    return _checked(out)


def _checked(metrics: Dict[str, Optional[float]]) -> Dict[str, Optional[float]]:
    """Metrics are finite numbers or None (no ground truth): a NaN here is a bug, and the
    metrics files are strict JSON (``null``, never a ``NaN`` literal)."""
    bad = [k for k, v in metrics.items() if v is not None and not math.isfinite(v)]
    if bad:
        raise RuntimeError(f"evaluation produced non-finite metrics {bad}: a bug in sod2.evaluation")
    return metrics


def _with_miss_rates(metrics: Dict, gt: GroundTruth, dt: Detections) -> Dict:
    """Add TinyPerson's log-average miss rates in percent (lower is better): ``MR`` (tiny,
    IoU 0.5, its headline), ``MR25``/``MR75`` (tiny) and ``MR_<setup>`` at IoU 0.5."""
    flags = gt.ignore_flag if gt.ignore_flag is not None else gt.ignore
    mr = miss_rates(gt, dt, flags)

    def pct(v):
        return None if v is None else 100.0 * v

    out = dict(metrics)
    out["MR"] = pct(mr[("tiny", 0.5)])
    out["MR25"], out["MR75"] = pct(mr[("tiny", 0.25)]), pct(mr[("tiny", 0.75)])
    for setup in MR_SETUPS:
        if setup != "tiny":
            out[f"MR_{setup}"] = pct(mr[(setup, 0.5)])
    # keep the per-class entries last
    return {**{k: v for k, v in out.items() if not k.startswith("AP-")},
            **{k: v for k, v in out.items() if k.startswith("AP-")}}
