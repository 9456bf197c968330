"""Merging: hand-built overlapping boxes for every method and metric, SAHI's postprocess on
the same predictions, and the evaluator's patch merge against Detectron2's NMS."""
import numpy as np
import pytest
import torch
from detectron2.layers import batched_nms, nms

from sod2.evaluation.merge import merge_patch_predictions
from sod2.inference import above, merge_detections, pairwise_metric

# A (score .9) and B (.8): A = [0,0,10,10], B = [5,0,15,10]: inter 50, IoU 50/150 = 1/3,
# IoS 50/100 = 1/2. C (.7) = [2,2,6,6] lies inside A: IoU 16/100, IoS 1. D (.6) far away.
A, B, C, D = [0, 0, 10, 10], [5, 0, 15, 10], [2, 2, 6, 6], [50, 50, 60, 60]
BOXES = np.array([A, B, C, D], np.float64)
SCORES = np.array([0.9, 0.8, 0.7, 0.6])
SAME = np.zeros(4, np.int64)


def test_pairwise_metric_hand_values():
    assert pairwise_metric(A, np.array([B, C, D]), "iou") == pytest.approx([1 / 3, 0.16, 0])
    assert pairwise_metric(A, np.array([B, C, D]), "ios") == pytest.approx([0.5, 1.0, 0])
    assert pairwise_metric(A, np.array([[3, 3, 3, 8]]), "ios")[0] == 0  # no area: 0, not nan


@pytest.mark.parametrize("method,metric,thr,expected", [
    # NMS / IoU 0.3: A suppresses B (1/3 >= .3) but not C (.16); D stays
    ("nms", "iou", 0.3, [(A, 0.9), (C, 0.7), (D, 0.6)]),
    # NMS / IoU 0.5: nothing matches
    ("nms", "iou", 0.5, [(A, 0.9), (B, 0.8), (C, 0.7), (D, 0.6)]),
    # NMS / IoS 0.5: A suppresses B (exactly 0.5: a match) and C (1.0)
    ("nms", "ios", 0.5, [(A, 0.9), (D, 0.6)]),
    # IoS just above 0.5: B survives
    ("nms", "ios", above(0.5), [(A, 0.9), (B, 0.8), (D, 0.6)]),
    # GREEDYNMM / IoU 0.3: A claims B -> union [0,0,15,10]; C is not claimed (.16)
    ("greedynmm", "iou", 0.3, [([0, 0, 15, 10], 0.9), (C, 0.7), (D, 0.6)]),
    # GREEDYNMM / IoS 0.5: A claims B and C; B merges (IoS .5) -> [0,0,15,10]; C inside it
    # (IoS 1) merges without changing it
    ("greedynmm", "ios", 0.5, [([0, 0, 15, 10], 0.9), (D, 0.6)]),
])
def test_hand_built_boxes(method, metric, thr, expected):
    m = merge_detections(BOXES, SCORES, SAME, method, metric, thr)
    assert m.boxes.tolist() == [list(map(float, b)) for b, _ in expected]
    assert m.scores.tolist() == [s for _, s in expected]


def test_greedynmm_drops_a_claimed_box_that_no_longer_matches_the_grown_box():
    # K [0,0,10,10] .9 claims E [0,0,10,20] (IoU .5) and F [0,5,10,15] (IoU 1/3 < .5: not
    # claimed at .5). With IoU .3: K claims E (.5) and F (1/3); E merges -> [0,0,10,20];
    # F vs the grown box: IoU 100/200 = .5 >= .3 -> merges too.
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 5, 10, 15]], np.float64)
    m = merge_detections(b, [0.9, 0.8, 0.7], [0, 0, 0], "greedynmm", "iou", 0.3)
    assert m.boxes.tolist() == [[0, 0, 10, 20]] and m.scores.tolist() == [0.9]
    # G [0,0,10,40] .8 and H [0,0,12,10] .7 both match K ([0,0,10,10]) by IoS 1; after G
    # grows K to [0,0,10,40], H has IoU 100/420 with it: with IoU .2 it was claimed (IoU
    # 100/120 with K) but no longer matches -> dropped, as SAHI does
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 40], [0, 0, 12, 10]], np.float64)
    m = merge_detections(b, [0.9, 0.8, 0.7], [0, 0, 0], "greedynmm", "iou", 0.25)
    assert m.boxes.tolist() == [[0, 0, 10, 40]] and len(m.scores) == 1


def test_class_wise_and_agnostic():
    classes = np.array([0, 1, 0, 0])  # B is another class
    m = merge_detections(BOXES, SCORES, classes, "nms", "ios", 0.5)
    assert m.boxes.tolist() == [A, B, D] and m.classes.tolist() == [0, 1, 0]
    m = merge_detections(BOXES, SCORES, classes, "nms", "ios", 0.5, class_agnostic=True)
    assert m.boxes.tolist() == [A, D]
    # class-agnostic GREEDYNMM: the merged detection has the keeper's class, the merged-in
    # box's on a score tie (SAHI)
    m = merge_detections(np.array([A, A]), [0.5, 0.5], [2, 1], "greedynmm", "iou", 0.5, class_agnostic=True)
    assert m.classes.tolist() == [1] and m.keep.tolist() == [0]
    order_first = merge_detections(np.array([A, A]), [0.5, 0.5], [2, 1], "nms", "iou", 0.5, class_agnostic=True)
    assert len(order_first.scores) == 1


def test_limit_empty_order_and_input_types():
    m = merge_detections(BOXES, SCORES, SAME, "nms", "iou", 0.5, max_detections=2)
    assert m.scores.tolist() == [0.9, 0.8] and m.keep.tolist() == [0, 1]
    m = merge_detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0), "greedynmm", "ios", 0.5)
    assert m.boxes.shape == (0, 4) and len(m.scores) == len(m.classes) == len(m.keep) == 0
    # the input order does not matter (ties broken by coordinates)
    perm = np.array([3, 1, 0, 2])
    a = merge_detections(BOXES, np.full(4, 0.5), SAME, "nms", "ios", 0.5)
    b = merge_detections(BOXES[perm], np.full(4, 0.5), SAME, "nms", "ios", 0.5)
    assert a.boxes.tolist() == b.boxes.tolist()
    t = merge_detections(torch.tensor(BOXES), torch.tensor(SCORES), torch.tensor(SAME))
    assert t.boxes.tolist() == merge_detections(BOXES, SCORES, SAME).boxes.tolist()


@pytest.mark.parametrize("kwargs,msg", [(dict(method="nmm"), "merge method"), (dict(metric="giou"), "match metric"),
                                        (dict(threshold=0.0), r"\(0, 1\]"), (dict(threshold=50), r"\(0, 1\]"),
                                        (dict(max_detections=-1), "max_detections")])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        merge_detections(BOXES, SCORES, SAME, **kwargs)
    with pytest.raises(ValueError, match="differ in length"):
        merge_detections(BOXES, SCORES[:3], SAME)


def _random_predictions(rng, n):
    """Clustered boxes (many overlaps) in non-negative coordinates, scores with ties."""
    centers = rng.uniform(10, 200, (max(1, n // 4), 2))
    xy = np.clip(centers[rng.integers(0, len(centers), n)] + rng.normal(0, 4, (n, 2)), 0, None)
    boxes = np.c_[xy, xy + rng.uniform(2, 40, (n, 2))].astype(np.float32).astype(np.float64)
    return boxes, np.round(rng.uniform(0.05, 1, n), 2).astype(np.float32).astype(np.float64), rng.integers(0, 3, n)


def _sahi(boxes, scores, classes, method, metric, thr, agnostic):
    from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
    from sahi.prediction import ObjectPrediction

    preds = [ObjectPrediction(bbox=b.tolist(), category_id=int(c), score=float(s))
             for b, s, c in zip(boxes, scores, classes)]
    post = {"nms": NMSPostprocess, "greedynmm": GreedyNMMPostprocess}[method](
        match_threshold=thr, match_metric=metric.upper(), class_agnostic=agnostic)
    out = post(preds) if len(preds) > 1 else preds  # get_sliced_prediction skips a single one
    return np.array([[*p.bbox.to_xyxy(), p.score.value, p.category.id] for p in out], np.float64).reshape(-1, 6)


def _rows(a):
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("method", ["nms", "greedynmm"])
@pytest.mark.parametrize("metric", ["iou", "ios"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_same_detections_as_sahi(method, metric, agnostic):
    pytest.importorskip("sahi")
    rng = np.random.default_rng(hash((method, metric, agnostic)) % 2 ** 32)
    for _ in range(25):
        boxes, scores, classes = _random_predictions(rng, int(rng.integers(1, 80)))
        thr = float(rng.choice([0.25, 0.5, 0.7]))
        ref = _sahi(boxes, scores, classes, method, metric, thr, agnostic)
        m = merge_detections(boxes, scores, classes, method, metric, thr, agnostic)
        ours = np.c_[m.boxes, m.scores, m.classes]
        assert ours.shape == ref.shape
        np.testing.assert_allclose(_rows(ours), _rows(ref), rtol=0, atol=1e-9)


def _old_patch_merge(preds, thr, agnostic):
    """sod2's former patch merge: shift in float32, Detectron2's (batched_)nms."""
    boxes = np.concatenate([np.asarray(p["boxes"], np.float32) + np.tile(np.asarray(p["origin"], np.float32), 2)
                            for p in preds])
    scores = np.concatenate([np.asarray(p["scores"], np.float32) for p in preds])
    classes = np.concatenate([np.asarray(p["classes"], np.int64) for p in preds])
    b, s, c = map(torch.from_numpy, (boxes, scores, classes))
    keep = (nms(b, s, thr) if agnostic else batched_nms(b, s, c, thr)).numpy()
    return boxes[keep], scores[keep], classes[keep]


@pytest.mark.parametrize("agnostic", [False, True])
def test_patch_merge_is_unchanged(agnostic):
    rng = np.random.default_rng(7)
    preds = []
    for k in range(6):
        b, s, c = _random_predictions(rng, 60)
        preds.append({"image_id": k % 2, "origin": [int(rng.integers(0, 500)), int(rng.integers(0, 500))],
                      "boxes": b, "scores": rng.uniform(0, 1, 60), "classes": c})
    merged = merge_patch_predictions(preds, 0.5, agnostic)
    for iid in (0, 1):
        ob, os_, oc = _old_patch_merge([p for p in preds if p["image_id"] == iid], 0.5, agnostic)
        got = merged[iid]
        assert got["boxes"].dtype == np.float32 and got["scores"].dtype == np.float32
        assert np.array_equal(got["boxes"], ob) and np.array_equal(got["scores"], os_) and np.array_equal(got["classes"], oc)
    # IoU exactly 0.5 is not "above" 0.5: both kept, as Detectron2's NMS keeps them
    two = [{"image_id": 0, "origin": [0, 0], "boxes": [[0, 0, 10, 10], [0, 0, 10, 20]], "scores": [0.9, 0.8],
            "classes": [0, 0]}]
    assert len(merge_patch_predictions(two, 0.5)[0]["scores"]) == 2
    assert len(merge_patch_predictions(two, 1.0)[0]["scores"]) == 2


def _naive(boxes, scores, classes, method, metric, thr, agnostic):
    """A plain Python reference: every pair compared, the rules of the module docstring."""
    def m(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        aa, ab = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
        den = aa + ab - iw * ih if metric == "iou" else min(aa, ab)
        return iw * ih / den if den > 0 else 0.0

    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], *boxes[i]))
    done, out = set(), []
    for p, i in enumerate(order):
        if i in done:
            continue
        done.add(i)
        later = [j for j in order[p + 1:] if j not in done and (agnostic or classes[j] == classes[i])
                 and m(boxes[i], boxes[j]) >= thr]
        done.update(later)
        box, score, cls = list(boxes[i]), scores[i], classes[i]
        if method == "greedynmm":
            for j in later:
                if m(box, boxes[j]) >= thr:
                    box = [min(box[0], boxes[j][0]), min(box[1], boxes[j][1]), max(box[2], boxes[j][2]),
                           max(box[3], boxes[j][3])]
                    cls = cls if score > scores[j] else classes[j]
                    score = max(score, scores[j])
        out.append((*box, score, cls))
    return np.array(out, np.float64).reshape(-1, 6)


@pytest.mark.parametrize("method", ["nms", "greedynmm"])
@pytest.mark.parametrize("metric", ["iou", "ios"])
def test_against_a_naive_loop_with_mixed_sizes(method, metric):
    rng = np.random.default_rng(3)
    for _ in range(10):
        n = int(rng.integers(1, 150))
        xy = rng.uniform(0, 300, (n, 2))
        wh = np.exp(rng.uniform(np.log(0.5), np.log(400), (n, 2)))  # 0.5 to 400 px
        wh[rng.random(n) < 0.05, 0] = 0.0  # boxes without area
        boxes = np.c_[xy, xy + wh]
        scores = np.round(rng.uniform(0, 1, n), 1)  # many ties
        classes = rng.integers(0, 2, n)
        for agnostic in (False, True):
            thr = float(rng.choice([0.1, 0.5, 0.9]))
            ref = _naive(boxes.tolist(), scores.tolist(), classes.tolist(), method, metric, thr, agnostic)
            got = merge_detections(boxes, scores, classes, method, metric, thr, agnostic)
            ours = np.c_[got.boxes, got.scores, got.classes]
            assert ours.shape == ref.shape
            np.testing.assert_array_equal(_rows(ours), _rows(ref))
