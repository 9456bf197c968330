"""RT-DETR's Hungarian matcher: the cost components against hand values, the assignment
against brute force over all injective assignments, empty targets."""
import itertools
import math

import pytest
import torch

from sod2.modeling.matchers import HungarianMatcher


def focal_cost(logit, alpha=0.25, gamma=2.0):
    p = 1 / (1 + math.exp(-logit))
    return alpha * (1 - p) ** gamma * -math.log(p + 1e-8) - (1 - alpha) * p ** gamma * -math.log(1 - p + 1e-8)


def giou(a, b):
    """a, b: cxcywh lists."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def naive_cost(logits, boxes, labels, gt_boxes, wc=2.0, wb=5.0, wg=2.0):
    Q, N = len(boxes), len(gt_boxes)
    return [[wb * sum(abs(x - y) for x, y in zip(boxes[q], gt_boxes[g]))
             + wc * focal_cost(logits[q][labels[g]])
             - wg * giou(boxes[q], gt_boxes[g]) for g in range(N)] for q in range(Q)]


def random_problem(Q, N, C, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(Q, C, generator=g) * 2
    boxes = torch.cat([torch.rand(Q, 2, generator=g) * 0.6 + 0.2, torch.rand(Q, 2, generator=g) * 0.3 + 0.05], 1)
    labels = torch.randint(0, C, (N,), generator=g)
    gt = torch.cat([torch.rand(N, 2, generator=g) * 0.6 + 0.2, torch.rand(N, 2, generator=g) * 0.3 + 0.05], 1)
    return logits, boxes, labels, gt


def brute_force(cost):
    """Minimum total cost over all injective assignments (every GT if N <= Q, else every
    query), with the pairs of the best and the gap to the second best."""
    Q, N = len(cost), len(cost[0])
    results = []
    if N <= Q:
        for qs in itertools.permutations(range(Q), N):
            results.append((sum(cost[q][g] for g, q in enumerate(qs)), sorted((q, g) for g, q in enumerate(qs))))
    else:
        for gs in itertools.permutations(range(N), Q):
            results.append((sum(cost[q][g] for q, g in enumerate(gs)), sorted((q, g) for q, g in enumerate(gs))))
    results.sort(key=lambda r: r[0])
    gap = results[1][0] - results[0][0] if len(results) > 1 else math.inf
    return results[0][0], results[0][1], gap


def test_focal_class_cost_hand_values():
    m = HungarianMatcher(cost_class=1.0, cost_bbox=0.0, cost_giou=0.0)
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 4)
    logits = torch.tensor([[0.0, 0.0], [-100.0, 0.0], [100.0, 0.0], [math.log(3.0), 0.0]])
    c = m.cost_matrix(logits, boxes, torch.tensor([0]), boxes[:1])[:, 0]
    # p = 1/2: (0.25 - 0.75) * 0.25 * ln 2
    assert float(c[0]) == pytest.approx(-0.125 * math.log(2), rel=1e-5)
    # p ~ 0: 0.25 * -ln(1e-8) (finite thanks to the 1e-8)
    assert float(c[1]) == pytest.approx(0.25 * 8 * math.log(10), rel=1e-5)
    # p = 1: -0.75 * -ln(1e-8)
    assert float(c[2]) == pytest.approx(-0.75 * 8 * math.log(10), rel=1e-5)
    # p = 3/4: 0.25 / 16 * ln(4/3) - 0.75 * 9/16 * ln 4
    assert float(c[3]) == pytest.approx(0.25 / 16 * math.log(4 / 3) - 0.75 * 9 / 16 * math.log(4), rel=1e-5)
    # the class column is the ground truth's label
    c1 = m.cost_matrix(logits, boxes, torch.tensor([1]), boxes[:1])[:, 0]
    assert torch.allclose(c1, torch.full((4,), -0.125 * math.log(2)), rtol=1e-5)


def test_box_costs_hand_values():
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    l1 = HungarianMatcher(0.0, 1.0, 0.0).cost_matrix(torch.zeros(1, 1), pred, torch.tensor([0]), gt)
    assert float(l1) == pytest.approx(0.1 + 0.0 + 0.0 + 0.2, abs=1e-6)
    # pred [0.4, 0.4, 0.6, 0.6], gt [0.5, 0.3, 0.7, 0.7]: inter 0.1 * 0.2 = 0.02,
    # union 0.04 + 0.08 - 0.02 = 0.10, hull 0.3 * 0.4 = 0.12: GIoU = 0.2 - 0.02 / 0.12
    g = HungarianMatcher(0.0, 0.0, 1.0).cost_matrix(torch.zeros(1, 1), pred, torch.tensor([0]), gt)
    assert float(g) == pytest.approx(-(0.2 - 0.02 / 0.12), abs=1e-6)
    # disjoint boxes: negative GIoU, positive cost > 1
    far = torch.tensor([[0.9, 0.9, 0.1, 0.1]])
    g = HungarianMatcher(0.0, 0.0, 1.0).cost_matrix(torch.zeros(1, 1), pred, torch.tensor([0]), far)
    assert float(g) == pytest.approx(-giou(pred[0].tolist(), far[0].tolist()), abs=1e-6) and float(g) > 0


def test_default_weights_and_combination():
    m = HungarianMatcher()
    assert (m.cost_class, m.cost_bbox, m.cost_giou, m.alpha, m.gamma) == (2.0, 5.0, 2.0, 0.25, 2.0)
    logits, boxes, labels, gt = random_problem(6, 4, 3, seed=0)
    c = m.cost_matrix(logits, boxes, labels, gt)
    expected = torch.tensor(naive_cost(logits.tolist(), boxes.tolist(), labels.tolist(), gt.tolist()))
    assert c.shape == (6, 4)
    assert torch.allclose(c, expected.float(), atol=1e-5)
    with pytest.raises(ValueError):
        HungarianMatcher(0.0, 0.0, 0.0)


@pytest.mark.parametrize("Q, N", [(5, 3), (6, 4), (4, 4), (7, 2), (3, 5), (5, 1)])
def test_assignment_against_brute_force(Q, N):
    C = 3
    matcher = HungarianMatcher()
    for seed in range(6):
        problems = [random_problem(Q, N, C, seed * 10 + b) for b in range(2)]
        logits = torch.stack([p[0] for p in problems])
        boxes = torch.stack([p[1] for p in problems])
        targets = [{"labels": p[2], "boxes": p[3]} for p in problems]
        result = matcher(logits, boxes, targets)
        assert len(result) == 2
        for (qi, gi), (lg, bx, lb, gt) in zip(result, problems):
            assert qi.dtype == torch.int64 and gi.dtype == torch.int64
            assert len(qi) == len(gi) == min(Q, N)
            assert qi.tolist() == sorted(qi.tolist())  # query order
            assert len(set(qi.tolist())) == len(qi) and len(set(gi.tolist())) == len(gi)
            cost = naive_cost(lg.tolist(), bx.tolist(), lb.tolist(), gt.tolist())
            best, pairs, gap = brute_force(cost)
            total = sum(cost[q][g] for q, g in zip(qi.tolist(), gi.tolist()))
            assert total == pytest.approx(best, abs=1e-4)
            if gap > 1e-4:  # a unique optimum: the very same pairs
                assert sorted(zip(qi.tolist(), gi.tolist())) == pairs


def test_matching_prefers_the_obvious_pairs():
    # three GTs, each reproduced exactly (box and confident class) by one query
    gt = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.7, 0.3, 0.2, 0.1], [0.5, 0.8, 0.3, 0.2]])
    labels = torch.tensor([2, 0, 1])
    boxes = torch.tensor([[0.5, 0.5, 0.1, 0.1], gt[2].tolist(), gt[0].tolist(), [0.9, 0.9, 0.05, 0.05],
                          gt[1].tolist()])
    logits = torch.full((5, 3), -3.0)
    logits[1, 1] = logits[2, 2] = logits[4, 0] = 3.0
    (qi, gi), = HungarianMatcher()(logits[None], boxes[None], [{"labels": labels, "boxes": gt}])
    assert qi.tolist() == [1, 2, 4] and gi.tolist() == [2, 0, 1]


def test_empty_targets():
    matcher = HungarianMatcher()
    logits, boxes, labels, gt = random_problem(5, 2, 3, seed=1)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}
    result = matcher(torch.stack([logits, logits]), torch.stack([boxes, boxes]),
                     [empty, {"labels": labels, "boxes": gt}])
    assert result[0][0].numel() == 0 and result[0][1].numel() == 0
    assert result[0][0].dtype == torch.int64
    assert len(result[1][0]) == 2
    # the same image alone gives the same matching
    alone = matcher(logits[None], boxes[None], [{"labels": labels, "boxes": gt}])
    assert torch.equal(alone[0][0], result[1][0]) and torch.equal(alone[0][1], result[1][1])
    # a whole batch without ground truth
    result = matcher(torch.stack([logits]), torch.stack([boxes]), [empty])
    assert result[0][0].numel() == 0


def test_no_gradient_and_half_precision_inputs():
    logits, boxes, labels, gt = random_problem(6, 3, 3, seed=2)
    logits.requires_grad_(True)
    matcher = HungarianMatcher()
    r32 = matcher(logits[None], boxes[None], [{"labels": labels, "boxes": gt}])
    c = matcher.cost_matrix(logits, boxes, labels, gt)
    assert not c.requires_grad and c.dtype == torch.float32
    # float16 heads (AMP): the cost is computed in float32 and stays finite for extreme logits
    c16 = matcher.cost_matrix(torch.full((6, 3), -30.0).half(), boxes.half(), labels, gt)
    assert torch.isfinite(c16).all()
    r16 = matcher(logits.detach().half()[None], boxes.half()[None], [{"labels": labels, "boxes": gt}])
    assert len(r16[0][0]) == len(r32[0][0]) == 3
