"""sod2's array evaluator against the reference implementations (tests/evaluation/references.py)."""
import json
from pathlib import Path

import numpy as np
import pytest

from sod2.evaluation.coco_json import detections_from_coco, ground_truth_from_coco
from sod2.evaluation.cocoeval import EvalParams, evaluate_boxes
from sod2.evaluation.protocols import PROTOCOLS, evaluate_protocol

from .references import PycocoEval, SodaEval, TinyPersonEval

# 100 COCO val2014 images with fixed detections and pycocotools' numbers (tests/fixtures/coco-ranges/README.md)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "coco-ranges"


def random_case(seed, n_img=12, n_cat=3, n_gt=120, n_dt=300, crowd=0.05, ignore=0.08,
                uncertain=0.0, id0=True, quantize=True):
    """A set with the situations where evaluators differ: crowd and ignored boxes, score
    and IoU ties (duplicated boxes, rounded scores), a gt id 0, images without gt,
    detections on them, categories without gt, boxes on the bucket boundaries."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in range(n_img)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(n_cat + 1)]  # last category: no gt
    anns = []
    for k in range(n_gt):
        s = float(np.exp(rng.uniform(np.log(3), np.log(60))))
        if quantize and k % 7 == 0:
            s = float(rng.choice([8.0, 12.0, 16.0, 20.0, 32.0]))  # area exactly on a boundary
        w, h = s, s * float(np.exp(rng.uniform(-0.3, 0.3)))
        x, y = float(rng.uniform(0, 200 - w)), float(rng.uniform(0, 200 - h))
        a = {"id": k if id0 else k + 1, "image_id": int(rng.integers(1, n_img)),  # image n_img: no gt
             "category_id": int(rng.integers(1, n_cat + 1)), "bbox": [x, y, w, h],
             "area": w * h, "iscrowd": int(rng.random() < crowd)}
        if rng.random() < ignore:
            a["ignore"] = 1
        if rng.random() < uncertain:
            a["uncertain"] = 1
        anns.append(a)
        if k % 11 == 0:  # an exact duplicate: IoU ties between ground truths
            anns.append(dict(a, id=n_gt + 10 + k, bbox=list(a["bbox"])))
    dts = []
    for _ in range(n_dt):
        if rng.random() < 0.7:
            g = anns[int(rng.integers(len(anns)))]
            x, y, w, h = g["bbox"]
            j = rng.normal(0, 0.12, 4)
            box = [x + j[0] * w, y + j[1] * h, w * float(np.exp(j[2])), h * float(np.exp(j[3]))]
            img, cat = g["image_id"], g["category_id"] if rng.random() < 0.9 else int(rng.integers(1, n_cat + 2))
        else:
            s = float(np.exp(rng.uniform(np.log(3), np.log(60))))
            box = [float(rng.uniform(0, 190)), float(rng.uniform(0, 190)), s, s]
            img, cat = int(rng.integers(1, n_img + 1)), int(rng.integers(1, n_cat + 2))
        score = float(np.round(rng.random(), 2))  # many ties
        dts.append({"image_id": img, "category_id": cat, "bbox": box, "score": score})
        if rng.random() < 0.05:
            dts.append(dict(dts[-1], bbox=list(box)))  # same box twice
    return {"images": images, "annotations": anns, "categories": cats}, dts


COCO_RANGES = dict(PROTOCOLS["coco"].area_ranges)
AITOD_RANGES = dict(PROTOCOLS["aitod"].area_ranges)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ranges,max_dets,iou", [
    (COCO_RANGES, [1, 10, 100], None),
    (AITOD_RANGES, [2, 5, 1500], None),
    ({"all": (0, 1e10), "x": (100, 400)}, [3], [0.3, 0.5, 0.9]),
])
def test_matches_pycocotools(seed, ranges, max_dets, iou):
    gt_dict, dts = random_case(seed)
    ref_p, ref_r = PycocoEval(gt_dict, dts, ranges, max_dets, iou).run()
    gt = ground_truth_from_coco(json.loads(json.dumps(gt_dict)))
    dt = detections_from_coco(dts, gt)
    params = EvalParams(area_ranges=ranges, max_dets=max_dets,
                        **({} if iou is None else {"iou_thresholds": iou}))
    res = evaluate_boxes(gt, dt, params)
    assert np.array_equal(res.precision, ref_p)
    assert np.array_equal(res.recall, ref_r)


@pytest.mark.parametrize("seed", range(4))
def test_sodad_matches_soda_reference(seed):
    gt_dict, dts = random_case(seed, crowd=0.1, ignore=0.15)
    proto = PROTOCOLS["sodad"]
    ref_p, ref_r = SodaEval(gt_dict, dts, proto.area_ranges, proto.max_dets).run()
    gt = ground_truth_from_coco(gt_dict, ignore_from="ignore")
    res = evaluate_boxes(gt, detections_from_coco(dts, gt), proto.params())
    assert np.array_equal(res.precision, ref_p)
    assert np.array_equal(res.recall, ref_r)
    # and ignore flags really change the numbers (the test would not notice otherwise)
    plain = PycocoEval(gt_dict, dts, proto.area_ranges, proto.max_dets).run()[0]
    assert not np.array_equal(plain, ref_p)


@pytest.mark.parametrize("seed", range(4))
def test_tinyperson_matches_tinybenchmark_reference(seed):
    gt_dict, dts = random_case(seed, n_cat=1, crowd=0.05, ignore=0.15, uncertain=0.05, n_dt=400)
    proto = PROTOCOLS["tinyperson"]
    ref = TinyPersonEval(gt_dict, dts, proto.area_ranges, proto.max_dets, proto.iou_thresholds)
    ref_p, ref_r = ref.run()
    gt = ground_truth_from_coco(gt_dict, ignore_from="ignore_or_crowd")
    res = evaluate_boxes(gt, detections_from_coco(dts, gt), proto.params())
    assert np.array_equal(res.precision, ref_p)
    assert np.array_equal(res.recall, ref_r)
    without_iod = evaluate_boxes(gt, detections_from_coco(dts, gt),
                                 PROTOCOLS["tinyperson"].params().__class__(
                                     area_ranges=proto.area_ranges, max_dets=[200],
                                     iou_thresholds=proto.iou_thresholds))
    assert not np.array_equal(without_iod.precision, ref_p)  # the IoD rule matters here


def test_empty_results_and_empty_ground_truth():
    gt_dict, dts = random_case(0)
    gt = ground_truth_from_coco(gt_dict)
    res = evaluate_boxes(gt, detections_from_coco([], gt), EvalParams(area_ranges=COCO_RANGES))
    ref_p, ref_r = PycocoEval(gt_dict, [], COCO_RANGES, [1, 10, 100]).run()
    assert np.array_equal(res.precision, ref_p) and np.array_equal(res.recall, ref_r)
    empty = dict(gt_dict, annotations=[])
    gt0 = ground_truth_from_coco(empty)
    res0 = evaluate_boxes(gt0, detections_from_coco(dts, gt0), EvalParams(area_ranges=COCO_RANGES))
    assert (res0.precision == -1).all() and (res0.recall == -1).all()
    m = evaluate_protocol(gt0, detections_from_coco(dts, gt0), "coco")
    assert m["AP"] is None and m["AR@100"] is None


@pytest.mark.realdata
def test_fixture_custom_ranges_to_1e9():
    expected = json.loads((FIXTURE / "expected.json").read_text())
    gt = ground_truth_from_coco(json.loads((FIXTURE / "instances_val2014_100.json").read_text()))
    dt = detections_from_coco(json.loads((FIXTURE / "instances_val2014_fakebbox100_results.json").read_text()), gt)
    ranges = {k: tuple(v) for k, v in expected["area_ranges"].items() if k != "all"}
    m = evaluate_protocol(gt, dt, "coco", area_ranges=ranges, max_dets=expected["max_dets"],
                          per_class=False)
    key = {"AP_all": "AP", "AP_50": "AP50", "AP_75": "AP75", "AR_all": "AR@1",
           "AR_second": "AR@10", "AR_third": "AR@100"}
    for name, value in expected["expected"].items():
        assert m[key.get(name, name)] / 100 == pytest.approx(value, abs=1e-9), name


def test_protocol_keys_and_headlines():
    gt_dict, dts = random_case(3)
    gt = ground_truth_from_coco(gt_dict)
    dt = detections_from_coco(dts, gt)
    aitod = evaluate_protocol(gt, dt, "aitod")
    assert list(aitod)[:3] == ["AP", "AP50", "AP75"]
    for b in ("verytiny", "tiny", "small", "medium"):
        assert f"AP_{b}" in aitod and f"AR_{b}" in aitod
    assert {"AR@100", "AR@300", "AR@1500"} <= set(aitod)
    assert "AP-c0" in aitod and aitod["AP-c3"] is None  # category without ground truth
    # the headline is the mean over IoU thresholds, recall points and classes at maxDets 1500
    p, _ = PycocoEval(gt_dict, dts, AITOD_RANGES, [100, 300, 1500]).run()
    s = p[:, :, :, 0, 2]
    assert aitod["AP"] == pytest.approx(100 * s[s > -1].mean(), abs=1e-12)
    gts = ground_truth_from_coco(gt_dict, ignore_from="ignore")
    soda = evaluate_protocol(gts, detections_from_coco(dts, gts), "sodad")
    assert {"AP_eS", "AP_rS", "AP_gS", "AP_Normal", "AR@1000", "AR_eS"} <= set(soda)
    assert "AP_Small" not in soda  # Small is the headline AP


@pytest.mark.parametrize("seed", range(3))
def test_tinyperson_miss_rate_matches_reference(seed):
    from sod2.evaluation.miss_rate import MR_SETUPS, miss_rates

    from .references import tinyperson_mr_reference

    gt_dict, dts = random_case(seed, n_cat=1, crowd=0.05, ignore=0.15, uncertain=0.05, n_dt=400)
    gt = ground_truth_from_coco(gt_dict, ignore_from="ignore_or_crowd")
    dt = detections_from_coco(dts, gt)
    got = miss_rates(gt, dt, gt.ignore_flag)
    ref = tinyperson_mr_reference(gt_dict, dts, MR_SETUPS)
    assert set(got) == set(ref)
    for key, v in ref.items():
        if v is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(v, abs=1e-12), key
    assert len({round(v, 6) for v in ref.values() if v is not None}) > 3  # not degenerate
    m = evaluate_protocol(gt, dt, "tinyperson")
    assert m["MR"] == pytest.approx(100 * ref[("tiny", 0.5)], abs=1e-9)
    assert m["MR_tiny1"] == pytest.approx(100 * ref[("tiny1", 0.5)], abs=1e-9)


@pytest.mark.parametrize("where", ["box", "score"])
def test_matching_refuses_nonfinite_detections(where):
    """A NaN box has NaN IoU, and "NaN < threshold" is false: it would match any object. The
    matching kernel's wrapper refuses it; drop_nonfinite_detections removes it and counts."""
    from sod2.evaluation.cocoeval import Detections, GroundTruth, drop_nonfinite_detections

    gt = GroundTruth(image_ids=np.array([1]), category_ids=np.array([1]), image=np.array([0]),
                     category=np.array([0]), boxes=np.array([[0.0, 0, 10, 10]]), area=np.array([100.0]),
                     crowd=np.array([False]), ignore=np.array([False]))
    boxes = np.array([[np.nan, 0, 10, 10] if where == "box" else [0.0, 0, 10, 10], [50.0, 50, 10, 10]])
    scores = np.array([0.9 if where == "box" else np.inf, 0.5])
    dt = Detections(image=np.array([0, 0]), category=np.array([0, 0]), boxes=boxes, scores=scores)
    params = EvalParams(area_ranges={"all": (0, 1e10)})
    with pytest.raises(ValueError, match="1 detections have a non-finite box or score"):
        evaluate_boxes(gt, dt, params)
    finite, dropped = drop_nonfinite_detections(dt)
    assert dropped == 1 and finite.boxes.tolist() == [[50.0, 50, 10, 10]] and finite.scores.tolist() == [0.5]
    assert evaluate_boxes(gt, finite, params).recall.max() == 0.0  # the remaining box misses
