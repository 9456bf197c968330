"""
``ScaleBucketEvaluator``: a Detectron2 ``DatasetEvaluator`` for scale-bucket protocols.

It reads ground truth straight from the registered dataset dicts (so ignore flags and
ignore regions are kept, unlike Detectron2's COCO conversion), merges patch
predictions back into whole images when the dataset is a patch split, and evaluates
with :mod:`sod2.evaluation.protocols` (identical numbers to the reference evaluators).
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from ..data.datasets.common import is_ignored
from ..errors import UserError
from .cocoeval import Detections, GroundTruth, finite_detection_mask, nonfinite_warning
from .merge import merge_patch_predictions
from .protocols import evaluate_protocol, format_class_table, format_table, get_protocol

logger = logging.getLogger(__name__)

__all__ = ["ScaleBucketEvaluator", "ground_truth_from_dicts"]


def _sorted_ids(ids: Sequence) -> List:
    try:
        return sorted(ids)
    except TypeError:  # mixed id types: keep dataset order
        return list(ids)


def ground_truth_from_dicts(dataset_dicts: Sequence[Dict], class_names: Sequence[str],
                            ignore_from: str = "iscrowd", regions: str = "replicate"
                            ) -> GroundTruth:
    """Ground truth arrays from sod2 dataset dicts.

    Args:
        dataset_dicts: dicts with ``image_id``, ``height``, ``width``, ``annotations``
            (sod2 conventions: ``ignore`` flags, category -1 for class-agnostic regions).
        class_names: K contiguous class names.
        ignore_from: the protocol's semantics. ``"iscrowd"`` (pycocotools): ignored boxes
            become crowd (IoD matching, absorb many detections); ``"ignore"`` (SODA-D) and
            ``"ignore_or_crowd"`` (TinyPerson): ignored boxes keep plain IoU and absorb one
            detection each.
        regions: what class-agnostic ignore regions become: ``"replicate"`` (one ignored
            box per class, so detections of any class inside are not penalised),
            ``"drop"`` (SODA-D's official "without ignore" ground truth), or
            ``"regions"`` (kept aside for the VisDrone protocol).
    """
    if regions not in ("replicate", "drop", "regions"):
        raise ValueError(f"regions must be replicate, drop or regions, got {regions!r}")
    by_id = {}
    for d in dataset_dicts:
        if d["image_id"] in by_id:
            raise ValueError(f"duplicate image_id {d['image_id']!r} in the evaluation dataset")
        by_id[d["image_id"]] = d
    image_ids = _sorted_ids(list(by_id))
    K = len(class_names)
    rows = []  # image, category, x, y, w, h, area, crowd, ignore
    sizes = np.zeros((len(image_ids), 2), np.int64)
    region_list = []
    crowd_for_ignored = ignore_from == "iscrowd"
    for i, iid in enumerate(image_ids):
        d = by_id[iid]
        sizes[i] = (d["height"], d["width"])
        reg = []
        for j, a in enumerate(d.get("annotations", [])):
            x, y, w, h = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
            area = float(a.get("area", w * h))
            if not np.isfinite([x, y, w, h, area]).all():
                raise UserError(f"image {iid!r} ({d.get('file_name')}): annotation #{j} has a "
                                f"non-finite bbox or area: {list(a['bbox'])!r}, area {area!r}")
            ign = is_ignored(a)
            c = int(a["category_id"])
            if c < 0:
                if regions == "replicate":
                    rows.extend((i, k, x, y, w, h, area, crowd_for_ignored, True) for k in range(K))
                elif regions == "regions":
                    reg.append((x, y, w, h))
                continue
            if c >= K:
                raise ValueError(f"image {iid!r}: category_id {c} >= number of classes {K}")
            rows.append((i, c, x, y, w, h, area, ign and crowd_for_ignored, ign))
        region_list.append(np.asarray(reg, np.float64).reshape(-1, 4))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 9)
    return GroundTruth(
        image_ids=np.array(image_ids, dtype=object), category_ids=np.arange(K),
        image=arr[:, 0].astype(np.int64), category=arr[:, 1].astype(np.int64),
        boxes=arr[:, 2:6], area=arr[:, 6], crowd=arr[:, 7].astype(bool),
        ignore=arr[:, 8].astype(bool), ignore_flag=arr[:, 8].astype(bool),
        category_names=list(class_names),
        image_sizes=sizes, regions=region_list)


class ScaleBucketEvaluator(DatasetEvaluator):
    """Evaluate box detections with a scale-bucket protocol.

    Results are ``{"bbox": OrderedDict}`` with the keys of
    :func:`sod2.evaluation.protocols.summarize` (percent; NaN where a bucket has no ground
    truth, Detectron2's convention; ``null`` in the metrics file, which is strict JSON).

    Detections with a NaN or infinite box coordinate or score (a diverged model) are
    removed before patch merging and matching, with one warning per evaluation that counts
    them: they are never matched and never written to the results file.
    """

    def __init__(
        self,
        dataset_name: str,
        protocol: Optional[str] = None,
        *,
        area_ranges: Optional[Dict[str, Tuple[float, float]]] = None,
        max_dets: Optional[Sequence[int]] = None,
        iou_thresholds: Optional[Sequence[float]] = None,
        ignore_regions: str = "auto",
        merge_nms_thresh: float = 0.5,
        merge_class_agnostic: Optional[bool] = None,
        output_dir: Optional[str] = None,
        distributed: bool = True,
    ):
        """
        Args:
            dataset_name: a registered dataset; a patch dataset (dicts with ``patch``) is
                evaluated on its metadata's ``whole_image_dataset`` after merging.
            protocol: coco, aitod, sodad, tinyperson or visdrone; default: the dataset
                metadata's ``eval_protocol`` (else coco).
            area_ranges / max_dets / iou_thresholds: overrides (see Protocol.with_overrides).
            ignore_regions: "auto" (SODA-D: drop, as its official ground truth;
                VisDrone: the toolkit's region rule; otherwise replicate per class),
                "replicate" or "drop" (see :func:`ground_truth_from_dicts`).
            merge_nms_thresh: NMS IoU when merging patches.
            merge_class_agnostic: class-agnostic merge NMS (default: True for
                tinyperson, as TinyBenchmark; False otherwise, as SODA-D).
            output_dir: where to write ``<dataset>_results.json`` and ``<dataset>_metrics.json``.
        """
        self.dataset_name = dataset_name
        meta = MetadataCatalog.get(dataset_name)
        self.protocol = protocol or meta.get("eval_protocol", "coco")
        if self.protocol != "visdrone":
            get_protocol(self.protocol)  # fail early on a typo
        self.overrides = dict(area_ranges=area_ranges, max_dets=max_dets,
                              iou_thresholds=iou_thresholds)
        if ignore_regions == "auto":
            ignore_regions = {"sodad": "drop", "visdrone": "regions"}.get(self.protocol, "replicate")
        self.ignore_regions = ignore_regions
        self.merge_nms_thresh = merge_nms_thresh
        self.merge_class_agnostic = (self.protocol == "tinyperson") if merge_class_agnostic is None \
            else merge_class_agnostic
        self.output_dir = output_dir
        self.distributed = distributed
        self.class_names = list(meta.thing_classes)
        self._predictions: List[Dict] = []

    def reset(self):
        self._predictions = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            inst = out["instances"].to("cpu")
            pred = {
                "image_id": inp["image_id"],
                "boxes": inst.pred_boxes.tensor.numpy().astype(np.float64),
                "scores": inst.scores.numpy().astype(np.float64),
                "classes": inst.pred_classes.numpy().astype(np.int64),
            }
            if "patch" in inp:
                pred["patch"] = {"image_id": inp["patch"]["image_id"],
                                 "origin": list(inp["patch"]["origin"])}
            self._predictions.append(pred)

    def _gather(self) -> Optional[List[Dict]]:
        if not self.distributed:
            return self._predictions
        comm.synchronize()
        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        return list(itertools.chain(*gathered))

    def _drop_nonfinite(self, preds: List[Dict]) -> List[Dict]:
        """Remove non-finite detections of every image; one warning counts them."""
        dropped, total, out = 0, 0, []
        for p in preds:
            keep = finite_detection_mask(p["boxes"], p["scores"])
            total += len(keep)
            if keep.all():
                out.append(p)
                continue
            dropped += int(len(keep) - keep.sum())
            out.append(dict(p, boxes=np.asarray(p["boxes"]).reshape(-1, 4)[keep],
                            scores=np.asarray(p["scores"])[keep], classes=np.asarray(p["classes"])[keep]))
        if dropped:
            logger.warning(nonfinite_warning(self.dataset_name, dropped, total))
        return out

    def _whole_image_predictions(self, preds: List[Dict]) -> Tuple[str, List[Dict]]:
        patches = [p for p in preds if "patch" in p]
        if not patches:
            return self.dataset_name, preds
        whole = MetadataCatalog.get(self.dataset_name).get("whole_image_dataset")
        if whole is None:
            raise ValueError(f"{self.dataset_name}: predictions are on patches but the dataset "
                             "metadata names no 'whole_image_dataset' to evaluate on")
        merged = merge_patch_predictions(
            [{"image_id": p["patch"]["image_id"], "origin": p["patch"]["origin"],
              "boxes": p["boxes"], "scores": p["scores"], "classes": p["classes"]} for p in patches],
            nms_thresh=self.merge_nms_thresh, class_agnostic=self.merge_class_agnostic)
        return whole, [dict(image_id=k, **v) for k, v in merged.items()]

    def evaluate(self):
        preds = self._gather()
        if preds is None:
            return {}
        preds = self._drop_nonfinite(preds)
        gt_dataset, preds = self._whole_image_predictions(preds)
        ignore_from = "iscrowd" if self.protocol == "visdrone" else get_protocol(self.protocol).ignore_from
        gt = ground_truth_from_dicts(DatasetCatalog.get(gt_dataset), self.class_names,
                                     ignore_from=ignore_from, regions=self.ignore_regions)
        index = {iid: i for i, iid in enumerate(gt.image_ids.tolist())}
        missing = [p["image_id"] for p in preds if p["image_id"] not in index]
        if missing:
            raise ValueError(f"{gt_dataset}: predictions for unknown image ids, e.g. {missing[:3]}")
        n = [len(p["scores"]) for p in preds]
        cat = lambda key, shape: np.concatenate(  # noqa: E731
            [np.asarray(p[key]).reshape(shape) for p in preds]) if preds else np.zeros((0,) + shape[1:])
        xyxy = cat("boxes", (-1, 4)).astype(np.float64)
        boxes = np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]] if len(xyxy) else np.zeros((0, 4))
        # each image's detections in decreasing score order (the VisDrone protocol keeps the
        # first maxDets in file order; COCO-style protocols sort anyway)
        dt = Detections(image=np.repeat([index[p["image_id"]] for p in preds], n).astype(np.int64),
                        category=cat("classes", (-1,)).astype(np.int64), boxes=boxes,
                        scores=cat("scores", (-1,)).astype(np.float64))
        order = np.lexsort((-dt.scores, dt.image))
        dt = Detections(image=dt.image[order], category=dt.category[order], boxes=dt.boxes[order],
                        scores=dt.scores[order])
        metrics = evaluate_protocol(gt, dt, self.protocol, **self.overrides)

        title = f"Evaluation of {self.dataset_name} ({self.protocol} protocol" + \
            (f", merged onto {gt_dataset}" if gt_dataset != self.dataset_name else "") + "):"
        logger.info("\n" + format_table(metrics, title=title))
        table = format_class_table(metrics)
        if table:
            logger.info("Per-category AP:\n" + table)
        if self.output_dir:
            self._save(gt, dt, metrics)
        res = OrderedDict((k, float("nan") if v is None else v) for k, v in metrics.items())
        return OrderedDict(bbox=res)

    def _save(self, gt: GroundTruth, dt: Detections, metrics: Dict) -> None:
        meta = MetadataCatalog.get(self.dataset_name)
        to_dataset_id = {v: k for k, v in meta.get("thing_dataset_id_to_contiguous_id", {}).items()}
        # full precision (a float's repr reads back bit-identical): rounding would move boxes
        # across IoU thresholds and area bounds, and the file would no longer score as reported
        results = [{"image_id": gt.image_ids[i], "category_id": to_dataset_id.get(int(c), int(c) + 1),
                    "bbox": [float(v) for v in b], "score": float(s)}
                   for i, c, b, s in zip(dt.image, dt.category, dt.boxes, dt.scores)]
        PathManager.mkdirs(self.output_dir)
        for name, obj in ((f"{self.dataset_name}_results.json", results),
                          (f"{self.dataset_name}_metrics.json",
                           {"protocol": self.protocol, "metrics": metrics})):
            path = os.path.join(self.output_dir, name)
            try:
                with PathManager.open(path + ".tmp", "w") as f:
                    json.dump(obj, f, allow_nan=False)  # strict JSON: no NaN literal
            except BaseException:
                if os.path.exists(path + ".tmp"):
                    os.remove(path + ".tmp")
                raise
            os.replace(path + ".tmp", path)
