"""The VisDrone protocol against a loop-by-loop port of the MATLAB toolkit."""
import numpy as np
import pytest

from sod2.evaluation.coco_json import detections_from_coco, ground_truth_from_coco
from sod2.evaluation.protocols import evaluate_protocol
from sod2.evaluation.visdrone import drop_in_ignored_regions, matlab_colon, visdrone_iou_thresholds

from .references import visdrone_drop, visdrone_reference


def test_matlab_colon_end_points_exact():
    t = matlab_colon(0.5, 0.05, 0.95)
    assert len(t) == 10 and t[0] == 0.5 and t[-1] == 0.95
    # MATLAB builds the second half down from the end point
    assert t[9] == 0.95 and t[8] == 0.95 - 0.05 and t[5] == 0.95 - 4 * 0.05
    assert t[4] == 0.5 + 4 * 0.05


def test_drop_rule_by_hand():
    # 10x10 image, region covering columns/rows 1..4 (MATLAB x=1,y=1,w=3,h=3 -> rows 1..4)
    regions = np.array([[1, 1, 3, 3]], float)
    # a box at (1,1) of size 3x3: MATLAB counts rows/cols (1,4] -> 3x3 = 9 pixels of 9
    # -> dropped; a box at (5,5) is outside -> kept; a box half inside
    boxes = np.array([[1, 1, 3, 3], [5, 5, 3, 3], [3, 1, 4, 3]], float)
    keep = drop_in_ignored_regions(boxes, regions, 10, 10)
    ref_rows = [list(b) + [1, 1] for b in boxes]
    ref_keep = visdrone_drop([[1, 1, 3, 3, 0, 0]], ref_rows, 10, 10)[1]
    assert keep.tolist() == [False, True, True]
    assert [list(r[:4]) for r in ref_keep] == [list(b) for b, k in zip(boxes, keep) if k]


def _case(seed, n_img=5, H=60, W=80):
    rng = np.random.default_rng(seed)
    images, dets_json, anns = [], [], []
    ref = []
    for i in range(n_img):
        gt_rows, det_rows, regions = [], [], []
        for _ in range(int(rng.integers(0, 3))):
            x, y = int(rng.integers(1, W - 10)), int(rng.integers(1, H - 10))
            w, h = int(rng.integers(4, 25)), int(rng.integers(4, 20))
            regions.append([x, y, w, h])
            gt_rows.append([x, y, w, h, 0, 0])
        for _ in range(int(rng.integers(3, 15))):
            w, h = int(rng.integers(2, 20)), int(rng.integers(2, 20))
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            c = int(rng.integers(1, 4))
            score = 0 if rng.random() < 0.15 else 1
            gt_rows.append([x, y, w, h, score, c])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(score == 0), "ignore": int(score == 0)})
        for _ in range(int(rng.integers(0, 30))):
            if gt_rows and rng.random() < 0.6:
                g = gt_rows[int(rng.integers(len(gt_rows)))]
                box = [g[0] + rng.normal(0, 1.5), g[1] + rng.normal(0, 1.5),
                       g[2] * np.exp(rng.normal(0, 0.1)), g[3] * np.exp(rng.normal(0, 0.1))]
                c = g[5] if g[5] else int(rng.integers(1, 4))
            else:
                box = [rng.uniform(0, W - 10), rng.uniform(0, H - 10), rng.uniform(2, 15), rng.uniform(2, 15)]
                c = int(rng.integers(1, 4))
            box = [float(v) for v in box]
            s = float(np.round(rng.random(), 2))
            det_rows.append(box + [s, c])
        # the toolkit keeps the first maxDets rows of the file: sort like a real results file
        det_rows.sort(key=lambda r: -r[4])
        dets_json += [{"image_id": i + 1, "category_id": r[5], "bbox": r[:4], "score": r[4]} for r in det_rows]
        images.append({"id": i + 1, "width": W, "height": H, "file_name": f"{i}.jpg",
                       "ignore_regions": regions})
        ref.append((gt_rows, det_rows, H, W))
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    return {"images": images, "annotations": anns, "categories": cats}, dets_json, ref


@pytest.mark.parametrize("seed", range(4))
def test_matches_toolkit_port(seed):
    gt_dict, dts, ref_images = _case(seed)
    max_dets = (1, 3, 10, 500)
    expected = visdrone_reference(ref_images, visdrone_iou_thresholds(), classes=(1, 2, 3),
                                  max_dets=max_dets)
    gt = ground_truth_from_coco(gt_dict)
    got = evaluate_protocol(gt, detections_from_coco(dts, gt), "visdrone", max_dets=max_dets)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
