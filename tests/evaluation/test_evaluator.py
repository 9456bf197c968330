"""ScaleBucketEvaluator: ground truth from dataset dicts, ignore handling, patch merging,
saved files, and agreement with tools/evaluate_json.py."""
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from sod2.data.datasets.common import IGNORE_REGION, make_annotation
from sod2.data.datasets.export import to_sod2_json
from sod2.data.split import split_record
from sod2.evaluation.evaluator import ScaleBucketEvaluator, ground_truth_from_dicts

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["a", "b"]


def _dataset(seed=0, n=6, size=120):
    rng = np.random.default_rng(seed)
    dicts = []
    for i in range(n):
        annos = []
        for _ in range(int(rng.integers(0, 9))):
            s = float(rng.uniform(3, 40))
            x, y = float(rng.uniform(0, size - s)), float(rng.uniform(0, size - s))
            annos.append(make_annotation([x, y, s, s], int(rng.integers(0, 2)),
                                         ignore=bool(rng.random() < 0.15)))
        if i % 2:
            annos.append(make_annotation([5, 5, 30, 20], IGNORE_REGION, ignore=True))
        dicts.append({"file_name": f"/nonexistent/{i}.png", "image_id": i + 1, "height": size,
                      "width": size, "annotations": annos})
    return dicts


def _register(dicts, protocol, **meta):
    name = f"test_eval_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=CLASSES, eval_protocol=protocol, **meta)
    return name


def _predictions(dicts, seed=1):
    """Noisy copies of the objects plus false positives, some inside ignore regions."""
    rng = np.random.default_rng(seed)
    out = []
    for d in dicts:
        boxes, scores, classes = [], [], []
        for a in d["annotations"]:
            x0, y0, x1, y1 = BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            j = rng.normal(0, 0.8, 4)
            boxes.append([x0 + j[0], y0 + j[1], x1 + j[2], y1 + j[3]])
            scores.append(float(rng.uniform(0.3, 1)))
            classes.append(max(int(a["category_id"]), 0))
        for _ in range(3):
            x, y = rng.uniform(0, 100, 2)
            boxes.append([x, y, x + 8, y + 8])
            scores.append(float(rng.uniform(0, 0.6)))
            classes.append(int(rng.integers(0, 2)))
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.tensor(classes, dtype=torch.int64)
        out.append(inst)
    return out


def _run(ev, dicts, preds):
    ev.reset()
    for d, p in zip(dicts, preds):
        ev.process([d], [{"instances": p}])
    return ev.evaluate()["bbox"]


@pytest.mark.parametrize("protocol", ["coco", "aitod", "sodad", "tinyperson", "visdrone"])
def test_evaluator_equals_evaluate_json(tmp_path, protocol):
    dicts = _dataset()
    name = _register(dicts, protocol)
    ev = ScaleBucketEvaluator(name, output_dir=str(tmp_path), distributed=False)
    res = _run(ev, dicts, _predictions(dicts))
    assert not math.isnan(res["AP"]) and 0 < res["AP"] < 100
    # the saved results evaluated by the CLI against the exported ground truth give the
    # same numbers, when the ground truth carries the same ignore semantics
    gt_dicts = dicts
    if protocol in ("coco", "aitod", "tinyperson"):  # regions are replicated per class
        gt_dicts = [dict(d, annotations=[a for a in d["annotations"] if a["category_id"] >= 0] + [
            make_annotation(a["bbox"], k, ignore=True) for a in d["annotations"]
            if a["category_id"] < 0 for k in range(len(CLASSES))]) for d in dicts]
    elif protocol == "sodad":  # regions dropped, as SODA-D's "without ignore" file
        gt_dicts = [dict(d, annotations=[a for a in d["annotations"] if a["category_id"] >= 0])
                    for d in dicts]
    gt_json = to_sod2_json(gt_dicts, CLASSES, "/nonexistent")
    if protocol == "tinyperson":  # TinyPerson files flag ignore without iscrowd
        for a in gt_json["annotations"]:
            a["iscrowd"] = 0
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    out = tmp_path / "m.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "evaluate_json.py"), "--gt", str(tmp_path / "gt.json"),
                    "--dt", str(tmp_path / f"{name}_results.json"), "--protocol", protocol, "--quiet",
                    "--output", str(out)], check=True, capture_output=True)
    cli = json.loads(out.read_text())["metrics"]
    for k, v in res.items():
        if v != v:  # NaN <-> null
            assert cli[k] is None, k
        else:
            assert cli[k] == pytest.approx(v, abs=1e-6), k
    saved = json.loads((tmp_path / f"{name}_metrics.json").read_text())
    assert saved["protocol"] == protocol


def test_ignore_regions_absorb_detections():
    dicts = [{"file_name": "x", "image_id": 1, "height": 100, "width": 100, "annotations": [
        make_annotation([50, 50, 10, 10], 0), make_annotation([0, 0, 40, 40], IGNORE_REGION, ignore=True)]}]
    inst = Instances((100, 100))
    # the object found, and a higher-scoring false positive of the same class in the region
    inst.pred_boxes = Boxes(torch.tensor([[50, 50, 60, 60], [5, 5, 15, 15]], dtype=torch.float32))
    inst.scores = torch.tensor([0.5, 0.9])
    inst.pred_classes = torch.tensor([0, 0])
    kept = _run(ScaleBucketEvaluator(_register(dicts, "aitod"), distributed=False), dicts, [inst])
    assert kept["AP-a"] == pytest.approx(100.0, abs=1e-9)  # ignored inside the region
    dropped = _run(ScaleBucketEvaluator(_register(dicts, "aitod"), ignore_regions="drop",
                                        distributed=False), dicts, [inst])
    assert dropped["AP-a"] == pytest.approx(50.0, abs=1e-9)  # now a false positive ranked first
    assert math.isnan(kept["AP-b"])  # class b has no ground truth
    gt = ground_truth_from_dicts(dicts, CLASSES, regions="replicate")
    assert gt.crowd.sum() == 2 and gt.ignore.sum() == 2  # region copied to both classes


def test_patch_predictions_are_merged(tmp_path):
    rng = np.random.default_rng(0)
    whole = []
    for i in range(3):
        annos = [make_annotation([float(x), float(y), 12.0, 12.0], int(c)) for x, y, c in
                 zip(rng.uniform(0, 280, 12), rng.uniform(0, 180, 12), rng.integers(0, 2, 12))]
        whole.append({"file_name": f"/n/{i}.png", "image_id": i + 1, "height": 200, "width": 300,
                      "annotations": annos})
    whole_name = _register(whole, "sodad")
    patches, preds = [], []
    for rec in whole:
        for (x0, y0), annos in split_record(rec, patch_size=128, stride=96):
            d = {"file_name": "p", "image_id": len(patches) + 1, "height": 128, "width": 128,
                 "annotations": annos, "patch": {"image_id": rec["image_id"], "origin": [x0, y0]}}
            patches.append(d)
            # the detector finds every object that reaches into the patch, with its full box
            full, cls = [], []
            for g in rec["annotations"]:
                x, y, w, h = g["bbox"]
                if x < x0 + 128 and x + w > x0 and y < y0 + 128 and y + h > y0:
                    full.append([x - x0, y - y0, x + w - x0, y + h - y0])
                    cls.append(g["category_id"])
            inst = Instances((128, 128))
            inst.pred_boxes = Boxes(torch.tensor(full, dtype=torch.float32).reshape(-1, 4))
            inst.scores = torch.full((len(full),), 0.9)
            inst.pred_classes = torch.tensor(cls, dtype=torch.int64)
            preds.append(inst)
    patch_name = _register(patches, "sodad", whole_image_dataset=whole_name)
    merged = _run(ScaleBucketEvaluator(patch_name, distributed=False), patches, preds)
    assert merged["AP50"] > 99.9  # duplicates from overlapping patches were suppressed
    unmerged = _run(ScaleBucketEvaluator(patch_name, merge_nms_thresh=1.0, distributed=False),
                    patches, preds)
    assert unmerged["AP50"] < merged["AP50"]


def test_unknown_protocol_and_missing_whole_dataset():
    dicts = _dataset()
    with pytest.raises(KeyError, match="unknown evaluation protocol"):
        ScaleBucketEvaluator(_register(dicts, "aitod"), protocol="cocoo")
    patches = [dict(dicts[0], patch={"image_id": 1, "origin": [0, 0]})]
    name = _register(patches, "aitod")
    ev = ScaleBucketEvaluator(name, distributed=False)
    with pytest.raises(ValueError, match="whole_image_dataset"):
        _run(ev, patches, _predictions(patches))
