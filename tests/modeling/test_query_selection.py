"""RT-DETR query selection: anchors (values, validity, +inf), the valid-mask on the encoder
head only, top-k on the largest class logit, the gathered outputs and their detach rules,
the eval buffer. Expected values come from hand examples and naive float64 loops."""
import math

import pytest
import torch
from torch import nn

from sod2.modeling.transformer.query_selection import QuerySelection, SelectedQueries, generate_anchors

SHAPES_640 = [(80, 80), (40, 40), (20, 20)]


def naive_anchors(shapes, grid_size=0.05, eps=1e-2):
    """List of (unactivated anchor as 4 floats or None when invalid) per token, float64."""
    out = []
    for lvl, (h, w) in enumerate(shapes):
        for i in range(h):
            for j in range(w):
                a = [(j + 0.5) / w, (i + 0.5) / h, grid_size * 2 ** lvl, grid_size * 2 ** lvl]
                if all(eps < v < 1 - eps for v in a):
                    out.append([math.log(v / (1 - v)) for v in a])
                else:
                    out.append(None)
    return out


def test_anchors_640_valid_count_and_ring():
    anchors, valid = generate_anchors(SHAPES_640)
    assert anchors.shape == (1, 8400, 4) and valid.shape == (1, 8400, 1)
    assert anchors.dtype == torch.float32 and valid.dtype == torch.bool
    assert int(valid.sum()) == 8084
    # the invalid ones are exactly the outer ring of the stride-8 map
    v0 = valid[0, :6400, 0].reshape(80, 80)
    ring = torch.ones(80, 80, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    assert torch.equal(~v0, ring)
    assert bool(valid[0, 6400:].all())
    assert bool(torch.isinf(anchors[0][~valid[0, :, 0]]).all())
    assert bool((anchors[0][~valid[0, :, 0]] > 0).all())  # +inf, not -inf
    assert bool(torch.isfinite(anchors[0][valid[0, :, 0]]).all())


@pytest.mark.parametrize("shapes", [SHAPES_640, [(3, 5), (2, 3), (1, 2)], [(6, 4), (3, 2)]])
def test_anchor_values_vs_naive_loop(shapes):
    anchors, valid = generate_anchors(shapes)
    expected = naive_anchors(shapes)
    assert anchors.shape[1] == len(expected)
    for k, e in enumerate(expected):
        if e is None:
            assert not bool(valid[0, k, 0])
            assert anchors[0, k].tolist() == [math.inf] * 4
        else:
            assert bool(valid[0, k, 0])
            assert anchors[0, k].tolist() == pytest.approx(e, abs=2e-6)


def test_anchor_hand_values():
    # level 0, row 1, column 2 of a 4 x 8 map: centre (2.5 / 8, 1.5 / 4), size 0.05
    anchors, _ = generate_anchors([(4, 8)])
    a = torch.sigmoid(anchors[0, 1 * 8 + 2])
    assert a.tolist() == pytest.approx([0.3125, 0.375, 0.05, 0.05], abs=1e-6)
    # a 10 x 10 level 1 map: sizes 0.1; cell (0, 0) centre 0.05 is valid (> 0.01)
    anchors, valid = generate_anchors([(1, 1), (10, 10)], eps=0.01)
    assert torch.sigmoid(anchors[0, 1]).tolist() == pytest.approx([0.05, 0.05, 0.1, 0.1], abs=1e-6)
    # a larger eps invalidates it
    _, valid = generate_anchors([(1, 1), (10, 10)], eps=0.06)
    assert not bool(valid[0, 1, 0]) and bool(valid[0, 1 + 55, 0])


def identity_head_module(hidden=4, num_classes=2, num_queries=3):
    """enc_output replaced by Identity and the score head reading channels 0 and 1, so the
    class logits are the (masked) memory's first two channels."""
    qs = QuerySelection(hidden_dim=hidden, num_classes=num_classes, num_queries=num_queries)
    qs.enc_output = nn.Identity()
    with torch.no_grad():
        qs.enc_score_head.weight.zero_()
        qs.enc_score_head.weight[0, 0] = 1.0
        qs.enc_score_head.weight[1, 1] = 1.0
        qs.enc_score_head.bias.zero_()
    return qs


def test_topk_on_max_class_logit_hand_example():
    shapes = [(3, 3)]  # centres 1/6, 1/2, 5/6 and size 0.05: all valid
    qs = identity_head_module()
    mem = torch.zeros(1, 9, 4)
    # max class logits per token: 0.1, 0.9 (class 1), 0.3, -1, 0.5, 0.2, 0.8, 0, 0.7
    logits = [(0.1, -1), (0.2, 0.9), (0.3, 0.0), (-1, -2), (0.5, 0.4), (0.2, 0.1), (0.8, 0.0), (0, 0), (0.7, 0.6)]
    for k, (a, b) in enumerate(logits):
        mem[0, k, 0], mem[0, k, 1] = a, b
    mem[0, :, 2] = torch.arange(9.0)  # a tag
    out = qs(mem, shapes)
    assert isinstance(out, SelectedQueries)
    assert out.index.tolist() == [[1, 6, 8]]
    assert torch.allclose(out.logits[0], torch.tensor([[0.2, 0.9], [0.8, 0.0], [0.7, 0.6]]))
    assert out.hidden[0, :, 2].tolist() == [1.0, 6.0, 8.0]  # gathered memory (Identity head)
    assert torch.equal(out.target, out.hidden)
    # last bbox Linear is zero at init: the boxes are the anchors
    anchors, _ = generate_anchors(shapes)
    assert torch.allclose(out.ref_unact[0], anchors[0, [1, 6, 8]])
    assert torch.allclose(out.boxes, torch.sigmoid(out.ref_unact))
    assert out.boxes[0, 0].tolist() == pytest.approx([0.5, 1 / 6, 0.05, 0.05], abs=1e-6)


def test_valid_mask_zeroes_memory_for_the_head_and_invalid_boxes_are_inf():
    shapes = [(3, 3)]
    qs = identity_head_module(num_queries=2)
    qs.grid_size, qs.eps = 0.5, 0.2  # only the centre token 4 is valid
    _, valid = generate_anchors(shapes, 0.5, 0.2)
    assert valid[0, :, 0].tolist() == [False] * 4 + [True] + [False] * 4
    mem = torch.zeros(1, 9, 4)
    mem[0, 0, :2] = 100.0  # invalid token with the largest logit: masked to 0
    mem[0, 4, :2] = torch.tensor([-0.5, -0.3])  # the valid token, max logit -0.3
    mem[0, 7, :2] = -0.2
    out = qs(mem, shapes)
    # after masking every invalid token scores 0 > -0.3: invalid tokens are selected (the
    # reference does not exclude them) and token 0's 100 is gone
    assert 4 not in out.index[0].tolist()
    assert out.logits[0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert bool(torch.isinf(out.ref_unact).all()) and bool((out.ref_unact > 0).all())
    assert out.boxes[0].tolist() == [[1.0] * 4] * 2
    assert out.hidden[0].abs().sum() == 0
    # with 3 queries all 8 invalid tokens tie at 0, so make token 4 win instead
    mem[0, 4, :2] = torch.tensor([0.5, 0.3])
    out = qs(mem, shapes)
    assert int(out.index[0, 0]) == 4
    assert torch.sigmoid(out.ref_unact[0, 0]).tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5], abs=1e-6)
    assert out.hidden[0, 0, :2].tolist() == [0.5, pytest.approx(0.3)]


@torch.no_grad()
def test_against_naive_float64_computation():
    torch.manual_seed(0)
    hidden, C, Q = 8, 3, 8
    shapes = [(4, 4), (2, 3)]
    # sizes 0.2 / 0.4 and eps 0.15: only the outer ring of the 4 x 4 level (centres 0.125,
    # 0.875) is invalid
    qs = QuerySelection(hidden_dim=hidden, num_classes=C, num_queries=Q, grid_size=0.2, eps=0.15)
    for p in qs.parameters():
        p.normal_(0, 0.5)
    # the (zeroed) invalid tokens all tie at one score that about half of the valid ones
    # beat, so both kinds are selected and the masking and the +inf boxes are exercised
    qs.enc_output[0].bias.zero_()
    qs.enc_score_head.bias.copy_(torch.tensor([0.0, -10.0, -10.0]))
    mem = torch.randn(2, 22, hidden)
    out = qs(mem, shapes)
    anchors = naive_anchors(shapes, grid_size=0.2, eps=0.15)
    assert sum(a is None for a in anchors) == 12
    assert any(anchors[k] is None for k in out.index.flatten().tolist())
    assert any(anchors[k] is not None for k in out.index.flatten().tolist())

    W0, b0 = qs.enc_output[0].weight.double(), qs.enc_output[0].bias.double()
    g, beta = qs.enc_output[1].weight.double(), qs.enc_output[1].bias.double()
    Ws, bs = qs.enc_score_head.weight.double(), qs.enc_score_head.bias.double()
    mlp = [(l.weight.double(), l.bias.double()) for l in qs.enc_bbox_head.layers]
    for b in range(2):
        naive = []
        for k in range(22):
            x = mem[b, k].double() * (0.0 if anchors[k] is None else 1.0)
            y = W0 @ x + b0
            y = (y - y.mean()) / torch.sqrt(((y - y.mean()) ** 2).mean() + 1e-5) * g + beta
            logit = Ws @ y + bs
            h = y
            for i, (W, bb) in enumerate(mlp):
                if i == len(mlp) - 1:
                    hid = h
                h = W @ h + bb
                if i < len(mlp) - 1:
                    h = torch.relu(h)
            box = h + (torch.tensor(anchors[k], dtype=torch.float64) if anchors[k] is not None
                       else torch.full((4,), math.inf, dtype=torch.float64))
            naive.append((float(logit.max()), y, logit, hid, box))
        # the invalid tokens all tie (same zeroed memory): compare scores, not the tie order
        top_scores = sorted((n[0] for n in naive), reverse=True)[:Q]
        index = out.index[b].tolist()
        assert len(set(index)) == Q
        assert [naive[k][0] for k in index] == pytest.approx(top_scores, abs=1e-5)
        for q, k in enumerate(index):
            _, y, logit, hid, box = naive[k]
            assert torch.allclose(out.hidden[b, q].double(), y, atol=1e-5)
            assert torch.allclose(out.logits[b, q].double(), logit, atol=1e-5)
            assert torch.allclose(out.box_hidden[b, q].double(), hid, atol=1e-5)
            assert torch.allclose(out.ref_unact[b, q].double(), box, atol=1e-5)  # inf == inf
            assert torch.allclose(out.boxes[b, q].double(), torch.sigmoid(box), atol=1e-6)


def test_detach_semantics():
    torch.manual_seed(1)
    qs = QuerySelection(hidden_dim=8, num_classes=3, num_queries=4)
    with torch.no_grad():
        qs.enc_bbox_head.layers[-1].weight.normal_(0, 0.1)
    mem = torch.randn(1, 16 + 4, 8, requires_grad=True)
    out = qs(mem, [(4, 4), (2, 2)])
    assert not out.target.requires_grad
    for name in ("ref_unact", "boxes", "logits", "hidden", "box_hidden"):
        assert getattr(out, name).requires_grad, name
    assert out.index.dtype == torch.int64
    # the encoder box loss trains the bbox head, enc_output and the memory
    out.boxes.sum().backward()
    assert qs.enc_bbox_head.layers[0].weight.grad.abs().sum() > 0
    assert qs.enc_output[0].weight.grad.abs().sum() > 0
    assert mem.grad.abs().sum() > 0
    assert qs.enc_score_head.weight.grad is None


def test_init_and_parameter_names():
    qs = QuerySelection(hidden_dim=16, num_classes=5)
    assert torch.allclose(qs.enc_score_head.bias, torch.full((5,), -4.59512), atol=1e-5)
    assert qs.enc_bbox_head.layers[-1].weight.abs().sum() == 0
    assert qs.enc_bbox_head.layers[-1].bias.abs().sum() == 0
    # xavier-uniform bound sqrt(6 / (fan_in + fan_out)) for 16 x 16 = 0.433 (default init: 0.25)
    w = qs.enc_output[0].weight
    assert w.abs().max() <= math.sqrt(6 / 32) and w.abs().max() > 0.26
    # the reference's decoder.* names (lyuwenyu/RT-DETR v1), without the "decoder." prefix
    assert set(qs.state_dict()) == {
        "enc_output.0.weight", "enc_output.0.bias", "enc_output.1.weight", "enc_output.1.bias",
        "enc_score_head.weight", "enc_score_head.bias",
        "enc_bbox_head.layers.0.weight", "enc_bbox_head.layers.0.bias",
        "enc_bbox_head.layers.1.weight", "enc_bbox_head.layers.1.bias",
        "enc_bbox_head.layers.2.weight", "enc_bbox_head.layers.2.bias"}


def test_eval_buffer_and_fallback():
    torch.manual_seed(2)
    qs = QuerySelection(hidden_dim=8, num_classes=3, num_queries=10, eval_spatial_size=(64, 96))
    assert qs.anchors.shape == (1, 8 * 12 + 4 * 6 + 2 * 3, 4)
    assert "anchors" not in qs.state_dict() and "valid_mask" not in qs.state_dict()
    a, v = generate_anchors([(8, 12), (4, 6), (2, 3)])
    assert torch.equal(qs.anchors, a) and torch.equal(qs.valid_mask, v)
    with torch.no_grad():
        qs.enc_bbox_head.layers[-1].weight.normal_(0, 0.1)
    mem = torch.randn(2, 126, 8)
    train_out = qs.train()(mem, [(8, 12), (4, 6), (2, 3)])
    eval_out = qs.eval()(mem, torch.tensor([[8, 12], [4, 6], [2, 3]]))
    assert torch.equal(train_out.ref_unact, eval_out.ref_unact)
    # the eval path does read the buffer
    qs.anchors.zero_()
    assert not torch.equal(qs(mem, [(8, 12), (4, 6), (2, 3)]).ref_unact, train_out.ref_unact)
    # other shapes in eval: generated (no failure)
    out = qs(torch.randn(1, 16 + 4 + 1, 8), [(4, 4), (2, 2), (1, 1)])
    assert out.ref_unact.shape == (1, 10, 4)


def test_errors():
    qs = QuerySelection(hidden_dim=8, num_classes=3, num_queries=30)
    with pytest.raises(ValueError, match="tokens"):
        qs(torch.randn(1, 21, 8), [(4, 4), (2, 2)])
    with pytest.raises(ValueError, match="queries"):
        qs(torch.randn(1, 20, 8), [(4, 4), (2, 2)])
