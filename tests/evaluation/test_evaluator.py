"""ScaleBucketEvaluator: ground truth from dataset dicts, ignore handling, patch merging,
saved files, and agreement with tools/evaluate_json.py."""
import json
import logging
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
from sod2.errors import UserError
from sod2.evaluation.evaluator import ScaleBucketEvaluator, ground_truth_from_dicts
from sod2.evaluation.merge import merge_patch_predictions

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


def _register(dicts, protocol, classes=CLASSES, **meta):
    name = f"test_eval_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(classes), eval_protocol=protocol, **meta)
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


def _cli_metrics(tmp_path, dicts, classes, protocol, results_path):
    """tools/evaluate_json.py run as a user runs it on ``results_path`` against ``dicts``
    exported with the ignore semantics the evaluator gives them; returns its metrics."""
    gt_dicts = dicts
    if protocol in ("coco", "aitod", "tinyperson"):  # regions are replicated per class
        gt_dicts = [dict(d, annotations=[a for a in d["annotations"] if a["category_id"] >= 0] + [
            make_annotation(a["bbox"], k, ignore=True) for a in d["annotations"]
            if a["category_id"] < 0 for k in range(len(classes))]) for d in dicts]
    elif protocol == "sodad":  # regions dropped, as SODA-D's "without ignore" file
        gt_dicts = [dict(d, annotations=[a for a in d["annotations"] if a["category_id"] >= 0])
                    for d in dicts]
    gt_json = to_sod2_json(gt_dicts, classes, "/")
    if protocol == "tinyperson":  # TinyPerson files flag ignore without iscrowd
        for a in gt_json["annotations"]:
            a["iscrowd"] = 0
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    out = tmp_path / "m.json"
    subprocess.run([sys.executable, str(REPO / "tools" / "evaluate_json.py"), "--gt", str(tmp_path / "gt.json"),
                    "--dt", str(results_path), "--protocol", protocol, "--quiet",
                    "--output", str(out)], check=True, capture_output=True)
    return _strict_json(out)["metrics"]


def _strict_json(path):
    """Parse as strict JSON: the NaN/Infinity literals Python's json accepts are refused."""
    def refuse(literal):
        raise AssertionError(f"{path} holds the non-JSON literal {literal}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


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
    cli = _cli_metrics(tmp_path, dicts, CLASSES, protocol, tmp_path / f"{name}_results.json")
    for k, v in res.items():
        if v != v:  # NaN <-> null
            assert cli[k] is None, k
        else:
            assert cli[k] == pytest.approx(v, abs=1e-6), k
    saved = _strict_json(tmp_path / f"{name}_metrics.json")  # a bucket without ground truth: null
    assert saved["protocol"] == protocol
    assert [k for k, v in res.items() if v != v] == [k for k, v in saved["metrics"].items() if v is None]


def _synthetic_val(n=6):
    """The first ``n`` images of the embedded ``sod2_synthetic_val`` (aitod protocol, one
    ignore region in some images), registered under a new name with the same metadata."""
    dicts = DatasetCatalog.get("sod2_synthetic_val")[:n]
    meta = MetadataCatalog.get("sod2_synthetic_val")
    name = _register(dicts, meta.eval_protocol, meta.thing_classes,
                     thing_dataset_id_to_contiguous_id=dict(meta.thing_dataset_id_to_contiguous_id))
    return name, dicts


def _instances(d, boxes_xyxy, scores, classes):
    inst = Instances((d["height"], d["width"]))
    inst.pred_boxes = Boxes(torch.tensor(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)))
    inst.scores = torch.tensor(np.asarray(scores, np.float32).reshape(-1))
    inst.pred_classes = torch.tensor(np.asarray(classes, np.int64).reshape(-1))
    return inst


def _gt_copies(d, rng):
    """Exact copies of an image's (non-ignored) objects with distinct scores in (0.5, 1)."""
    objs = [a for a in d["annotations"] if a["category_id"] >= 0 and not a.get("ignore")]
    boxes = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS) for a in objs]
    return boxes, rng.uniform(0.5, 1.0, len(objs)), [a["category_id"] for a in objs]


def _junk(d, k, rng):
    """``k`` detections that are non-finite in every way a diverged model produces: NaN boxes,
    infinite boxes, NaN and +-inf scores. Unless dropped, the finite-box ones with a score of
    +inf are false positives ranked first, and NaN boxes match any ground truth."""
    nan, inf = float("nan"), float("inf")
    x, y = float(rng.uniform(0, d["width"] - 20)), float(rng.uniform(0, d["height"] - 20))
    kinds = [([nan] * 4, 0.99), ([x, y, x + 10, y + 10], inf), ([inf, inf, inf, inf], 0.98),
             ([-inf, y, x, inf], 0.97), ([x, y, x + 10, y + 10], nan), ([nan, y, x + 10, y + 10], -inf)]
    picks = [kinds[i % len(kinds)] for i in range(k)]
    return [b for b, _ in picks], [s for _, s in picks], list(rng.integers(0, 3, k))


def _nonfinite_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "NaN or infinite box or score" in r.getMessage()]


def test_nonfinite_detections_never_match(tmp_path, caplog):
    """A diverged model's NaN/inf detections: exact copies of every object plus 50 non-finite
    detections per image score AP = AR = 100 (what the copies alone score by definition of
    AP), one warning counts the 6 x 50 dropped, and the results file holds only the copies."""
    name, dicts = _synthetic_val()
    rng = np.random.default_rng(0)
    preds, n_copies = [], 0
    for d in dicts:
        (cb, cs, cc), (jb, js, jc) = _gt_copies(d, rng), _junk(d, 50, rng)
        n_copies += len(cb)
        order = rng.permutation(len(cb) + 50)  # junk interleaved with the copies
        preds.append(_instances(d, np.array(cb + jb, np.float64)[order], np.r_[cs, js][order],
                                np.r_[cc, jc][order]))
    ev = ScaleBucketEvaluator(name, output_dir=str(tmp_path), distributed=False)
    caplog.set_level(logging.WARNING)
    res = _run(ev, dicts, preds)
    for k in ("AP", "AP50", "AP75", "AR@100", "AR@300", "AR@1500", "AP-disc", "AP-cross", "AP-ring"):
        assert res[k] == pytest.approx(100.0, abs=1e-9), k
    assert _nonfinite_warnings(caplog) == [
        f"{name}: 300 of {n_copies + 300} detections have a NaN or infinite box or score and are not "
        "evaluated (they would match any ground truth); a diverged model?"]
    results = _strict_json(tmp_path / f"{name}_results.json")
    assert len(results) == n_copies
    _strict_json(tmp_path / f"{name}_metrics.json")


def test_nonfinite_detections_change_nothing_and_the_cli_agrees(tmp_path, caplog):
    """Finite detections (noisy copies and false positives) score the same with and without
    non-finite ones added; the results file of the run with them is strict JSON that
    tools/evaluate_json.py accepts and scores the same."""
    name, dicts = _synthetic_val()
    finite = _predictions(dicts, seed=3)
    rng = np.random.default_rng(1)
    mixed = []
    for d, p in zip(dicts, finite):
        jb, js, jc = _junk(d, 30, rng)
        mixed.append(_instances(d, np.r_[p.pred_boxes.tensor.numpy(), np.array(jb)],
                                np.r_[p.scores.numpy(), js], np.r_[p.pred_classes.numpy(), jc]))
    alone = _run(ScaleBucketEvaluator(name, output_dir=str(tmp_path / "alone"), distributed=False),
                 dicts, finite)
    caplog.set_level(logging.WARNING)
    with_junk = _run(ScaleBucketEvaluator(name, output_dir=str(tmp_path / "mixed"), distributed=False),
                     dicts, mixed)
    assert 5 < alone["AP"] < 95
    assert list(with_junk) == list(alone)
    for k, v in alone.items():
        assert (math.isnan(v) and math.isnan(with_junk[k])) or with_junk[k] == v, (k, v, with_junk[k])
    assert len(_nonfinite_warnings(caplog)) == 1 and " 180 of " in _nonfinite_warnings(caplog)[0]
    results = tmp_path / "mixed" / f"{name}_results.json"
    assert _strict_json(results) == _strict_json(tmp_path / "alone" / f"{name}_results.json")
    cli = _cli_metrics(tmp_path, dicts, list(MetadataCatalog.get(name).thing_classes), "aitod", results)
    for k, v in with_junk.items():
        assert cli[k] is None if math.isnan(v) else cli[k] == pytest.approx(v, abs=1e-6), (k, v, cli[k])


def test_all_nan_detections_score_zero(tmp_path, caplog):
    """300 NaN boxes and scores per image (what the diverged RT-DETR of the issue outputs)
    score AP 0 and AR 0, not the 46 / 100 they scored when NaN boxes matched."""
    name, dicts = _synthetic_val(5)
    nan = np.full((300, 4), np.nan)
    preds = [_instances(d, nan, np.full(300, np.nan), np.arange(300) % 3) for d in dicts]
    caplog.set_level(logging.WARNING)
    res = _run(ScaleBucketEvaluator(name, output_dir=str(tmp_path), distributed=False), dicts, preds)
    assert (res["AP"], res["AP50"], res["AR@1500"]) == (0.0, 0.0, 0.0)
    assert _nonfinite_warnings(caplog) == [
        f"{name}: 1500 of 1500 detections have a NaN or infinite box or score and are not "
        "evaluated (they would match any ground truth); a diverged model?"]
    assert _strict_json(tmp_path / f"{name}_results.json") == []
    assert _strict_json(tmp_path / f"{name}_metrics.json")["metrics"]["AP"] == 0.0


def test_patch_merging_drops_nonfinite_detections_first():
    """On a patch split, NaN detections are removed before NMS merging (which refuses them)."""
    whole = [{"file_name": "w", "image_id": 1, "height": 100, "width": 100,
              "annotations": [make_annotation([10, 10, 12, 12], 0), make_annotation([60, 60, 12, 12], 1)]}]
    whole_name = _register(whole, "aitod")
    patches = [{"file_name": "p", "image_id": 11, "height": 64, "width": 64, "annotations": [],
                "patch": {"image_id": 1, "origin": [0, 0]}},
               {"file_name": "p", "image_id": 12, "height": 64, "width": 64, "annotations": [],
                "patch": {"image_id": 1, "origin": [36, 36]}}]
    nan = float("nan")
    preds = [_instances(patches[0], [[10, 10, 22, 22], [nan, 0, 5, 5]], [0.9, 0.95], [0, 0]),
             _instances(patches[1], [[24, 24, 36, 36], [0, 0, 9, 9]], [0.8, nan], [1, 1])]
    name = _register(patches, "aitod", whole_image_dataset=whole_name)
    res = _run(ScaleBucketEvaluator(name, distributed=False), patches, preds)
    assert res["AP"] == pytest.approx(100.0, abs=1e-9) and res["AR@1500"] == pytest.approx(100.0, abs=1e-9)
    with pytest.raises(ValueError, match="2 detections have a non-finite box or score"):
        merge_patch_predictions([{"image_id": 1, "origin": [0, 0], "boxes": [[nan] * 4, [0, 0, 1, 1]],
                                  "scores": [0.5, float("inf")], "classes": [0, 0]}])


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


def test_nonfinite_ground_truth_is_refused_naming_the_image():
    dicts = [{"file_name": "a.png", "image_id": 7, "height": 50, "width": 50,
              "annotations": [make_annotation([1, 1, 5, 5], 0), make_annotation([1, float("nan"), 5, 5], 1)]}]
    with pytest.raises(UserError, match=r"image 7 \(a.png\): annotation #1 has a non-finite bbox"):
        ground_truth_from_dicts(dicts, CLASSES)
