"""RT-DETR contrastive denoising: group count and sizes, the attention mask (who sees whom),
the fixed matching indices, label noise only on real entries, box noise ranges (positives
|r| < 1, negatives 1 <= |r| < 2 half sizes), clipping, padding rows, and the exact noise
against a naive loop fed with the same random draws."""
import math

import pytest
import torch

from sod2.modeling.transformer.denoising import ContrastiveDenoising, DenoisingQueries, denoising_attn_mask

LOG_EPS = math.log(1e-5)  # inverse_sigmoid(0) with the reference's eps


def make_targets(counts, num_classes=10, seed=0, centre=None, size=None):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for n in counts:
        if centre is None:
            wh = torch.rand(n, 2, generator=g) * 0.3 + 0.02
            cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        else:
            cxcy = torch.tensor(centre).expand(n, 2).clone()
            wh = torch.tensor(size).expand(n, 2).clone()
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g),
                        "boxes": torch.cat([cxcy, wh], dim=1)})
    return targets


def one_hot_embedding(dn, num_classes):
    """class_embed row c = e_c (hidden >= C + 1), padding row stays zero: labels can be read
    back from the content queries."""
    with torch.no_grad():
        dn.class_embed.weight.zero_()
        dn.class_embed.weight[:num_classes, :num_classes] = torch.eye(num_classes)


def read_labels(embed, num_classes):
    """(B, Nd, hidden) -> (B, Nd) labels, num_classes for the zero (padding) rows."""
    lab = embed[..., :num_classes].argmax(-1)
    return torch.where(embed.abs().sum(-1) == 0, torch.full_like(lab, num_classes), lab)


def xyxy(b):
    return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], dim=-1)


@pytest.mark.parametrize("counts, num_denoising, groups, nd", [
    ([3], 100, 33, 198),        # the spec's example
    ([3, 0, 1], 100, 33, 198),
    ([7, 2], 100, 14, 196),
    ([50, 10], 100, 2, 200),
    ([100], 100, 1, 200),
    ([150, 3], 100, 1, 300),    # more ground truths than the budget: one group
    ([4], 10, 2, 16),
])
def test_group_count_and_sizes(counts, num_denoising, groups, nd):
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16, num_denoising=num_denoising)
    out = dn(make_targets(counts), num_queries=7)
    assert isinstance(out, DenoisingQueries)
    assert out.num_groups == groups and out.num_denoising == nd
    B = len(counts)
    assert out.embed.shape == (B, nd, 16) and out.boxes_unact.shape == (B, nd, 4)
    assert out.attn_mask.shape == (nd + 7, nd + 7) and out.attn_mask.dtype == torch.bool
    assert [len(p) for p in out.positive_index] == [n * groups for n in counts]


def test_none_cases():
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16)
    assert dn(make_targets([0, 0]), 300) is None  # no ground truth in the batch
    assert dn([], 300) is None
    assert ContrastiveDenoising(10, 16, num_denoising=0)(make_targets([2]), 300) is None


def test_attn_mask_who_sees_whom():
    Q = 5
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16, num_denoising=6)
    out = dn(make_targets([2, 1]), Q)  # m = 2: 3 groups of 4 queries
    assert (out.num_groups, out.num_denoising) == (3, 12)
    mask = out.attn_mask
    for q in range(12 + Q):
        for k in range(12 + Q):
            if q >= 12:  # matching query: sees the matching queries only
                blocked = k < 12
            elif k >= 12:  # dn query sees every matching query
                blocked = False
            else:  # dn query sees its own group only
                blocked = q // 4 != k // 4
            assert bool(mask[q, k]) == blocked, (q, k)
    assert torch.equal(denoising_attn_mask(12, 3, Q), mask)
    # one group: dn queries see each other
    m1 = denoising_attn_mask(4, 1, 2)
    assert not m1[:4, :].any() and m1[4:, :4].all() and not m1[4:, 4:].any()


def test_positive_and_gt_index():
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16, num_denoising=9)
    out = dn(make_targets([3, 0, 2]), 10)
    m, G = 3, 3
    assert out.num_groups == G
    for n, pos, gt in zip([3, 0, 2], out.positive_index, out.gt_index):
        assert pos.tolist() == [g * 2 * m + j for g in range(G) for j in range(n)]
        assert gt.tolist() == [j for g in range(G) for j in range(n)]
        assert pos.dtype == torch.int64 and gt.dtype == torch.int64


def test_labels_without_noise_and_padding_rows():
    C = 10
    dn = ContrastiveDenoising(num_classes=C, hidden_dim=16, num_denoising=8, label_noise_ratio=0.0)
    one_hot_embedding(dn, C)
    targets = make_targets([3, 1], num_classes=C)
    out = dn(targets, 4)
    labels = read_labels(out.embed, C)
    m, G = 3, 2
    for i, t in enumerate(targets):
        n = len(t["labels"])
        for q in range(out.num_denoising):
            j = q % m  # entry within its half group (positives then negatives)
            expected = int(t["labels"][j]) if j < n else C
            assert int(labels[i, q]) == expected
            if j >= n:  # padding: zero content query, box inverse_sigmoid(0) everywhere
                assert out.embed[i, q].abs().sum() == 0
                assert out.boxes_unact[i, q].tolist() == pytest.approx([LOG_EPS] * 4, abs=1e-4)


@pytest.mark.parametrize("ratio", [0.5, 1.0])
def test_label_noise_rate_and_only_on_real_entries(ratio):
    C = 10
    dn = ContrastiveDenoising(num_classes=C, hidden_dim=16, num_denoising=100, label_noise_ratio=ratio)
    one_hot_embedding(dn, C)
    torch.manual_seed(0)
    targets = make_targets([5, 2, 0], num_classes=C)
    changed, total = 0, 0
    for _ in range(40):
        out = dn(targets, 3)
        labels = read_labels(out.embed, C)
        for i, t in enumerate(targets):
            n = len(t["labels"])
            for q in range(out.num_denoising):
                j = q % 5
                if j >= n:
                    assert int(labels[i, q]) == C  # padded entries never get a label
                else:
                    total += 1
                    changed += int(labels[i, q]) != int(t["labels"][j])
    # flip probability ratio / 2, and a flipped label equals the old one with probability 1 / C
    expected = ratio / 2 * (1 - 1 / C)
    assert abs(changed / total - expected) < 0.02, (changed / total, expected)


def decoded_noise(out, targets, m):
    """Per real entry: (is_negative, r per xyxy coordinate) with r = displacement / half size,
    skipping entries whose noised box is degenerate (the inverse sigmoid clamps it)."""
    boxes = torch.sigmoid(out.boxes_unact.double())
    rows = []
    for i, t in enumerate(targets):
        gt = t["boxes"].double()
        for q in range(out.num_denoising):
            j = q % (2 * m)
            neg, j = j >= m, j % m
            if j >= len(gt) or (boxes[i, q, 2:] < 1e-3).any():
                continue
            half = torch.cat([gt[j, 2:], gt[j, 2:]]) / 2
            rows.append((neg, ((xyxy(boxes[i, q]) - xyxy(gt[j])) / half).tolist()))
    return rows


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_box_noise_ranges(scale):
    torch.manual_seed(1)
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16, num_denoising=100, box_noise_scale=scale)
    # boxes well inside the image: no clipping (a coordinate moves at most one box size)
    targets = make_targets([4, 2], centre=(0.5, 0.5), size=(0.2, 0.1))
    rows = decoded_noise(dn(targets, 3), targets, 4)
    pos = torch.tensor([r for neg, r in rows if not neg])
    neg = torch.tensor([r for neg, r in rows if neg])
    assert len(pos) == 150 and len(neg) > 50
    assert pos.abs().max() < scale + 1e-4
    assert pos.abs().max() > 0.9 * scale and (pos > 0).any() and (pos < 0).any()
    assert neg.abs().min() > scale - 1e-4 and neg.abs().max() < 2 * scale + 1e-4
    assert neg.abs().min() < 1.1 * scale and neg.abs().max() > 1.9 * scale
    assert (neg > 0).any() and (neg < 0).any()


def test_clipping_at_the_border():
    torch.manual_seed(2)
    dn = ContrastiveDenoising(num_classes=10, hidden_dim=16, num_denoising=100)
    targets = make_targets([3], centre=(0.02, 0.97), size=(0.04, 0.06))
    out = dn(targets, 3)
    assert torch.isfinite(out.boxes_unact).all()
    assert out.boxes_unact.min() >= LOG_EPS - 1e-4 and out.boxes_unact.max() <= -LOG_EPS + 1e-4
    b = xyxy(torch.sigmoid(out.boxes_unact.double()))
    assert b.min() > -1e-4 and b.max() < 1 + 1e-4
    # some boxes did hit the border (x1 clipped to 0 or y2 to 1)
    assert (b[..., 0] < 1e-4).any() and (b[..., 3] > 1 - 1e-4).any()


def inverse_sigmoid64(x, eps=1e-5):
    x = min(max(x, 0.0), 1.0)
    return math.log(max(x, eps) / max(1 - x, eps))


def test_exact_noise_against_naive_loop_with_the_same_draws():
    """The draws, in the reference's order: label-flip uniforms (B, Nd), new labels (B, Nd)
    int32 in [0, C), signs (B, Nd, 4) in {0, 1}, r uniforms (B, Nd, 4)."""
    C, ratio, scale = 7, 1.0, 0.7
    dn = ContrastiveDenoising(num_classes=C, hidden_dim=16, num_denoising=12, label_noise_ratio=ratio,
                              box_noise_scale=scale)
    one_hot_embedding(dn, C)
    targets = make_targets([3, 1, 0], num_classes=C, seed=5)
    torch.manual_seed(7)
    out = dn(targets, 2)
    B, m, G = 3, 3, 4
    Nd = 2 * m * G
    assert out.num_denoising == Nd
    torch.manual_seed(7)
    u = torch.rand(B, Nd)
    new = torch.randint(0, C, (B, Nd), dtype=torch.int32)
    sign = torch.randint(0, 2, (B, Nd, 4), dtype=torch.float32)
    r = torch.rand(B, Nd, 4)

    labels = read_labels(out.embed, C)
    got = out.boxes_unact.double()
    for i, t in enumerate(targets):
        for q in range(Nd):
            j = q % (2 * m)
            negative, j = j >= m, j % m
            if j >= len(t["labels"]):
                assert int(labels[i, q]) == C
                assert got[i, q].tolist() == pytest.approx([LOG_EPS] * 4, abs=1e-4)
                continue
            lab = int(new[i, q]) if float(u[i, q]) < ratio * 0.5 else int(t["labels"][j])
            assert int(labels[i, q]) == lab
            cx, cy, w, h = t["boxes"][j].double().tolist()
            corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            halves = [w / 2, h / 2, w / 2, h / 2]
            noised = []
            for c in range(4):
                rr = float(r[i, q, c]) + (1.0 if negative else 0.0)
                s = 2.0 * float(sign[i, q, c]) - 1.0
                noised.append(min(max(corners[c] + s * rr * halves[c] * scale, 0.0), 1.0))
            x1, y1, x2, y2 = noised
            box = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
            assert torch.sigmoid(got[i, q]).tolist() == pytest.approx(
                [1 / (1 + math.exp(-inverse_sigmoid64(v))) for v in box], abs=1e-6)
            for v, g in zip(box, got[i, q].tolist()):
                if 1e-3 < v < 1 - 1e-3:
                    assert g == pytest.approx(inverse_sigmoid64(v), abs=1e-4)


def test_embedding_init_and_gradient():
    dn = ContrastiveDenoising(num_classes=5, hidden_dim=8)
    assert dn.class_embed.weight.shape == (6, 8) and dn.class_embed.padding_idx == 5
    assert dn.class_embed.weight[5].abs().sum() == 0
    out = dn(make_targets([2, 1], num_classes=5), 3)
    assert out.embed.requires_grad and not out.boxes_unact.requires_grad
    out.embed.sum().backward()
    grad = dn.class_embed.weight.grad
    assert grad[:5].abs().sum() > 0 and grad[5].abs().sum() == 0
