"""RT-DETR's SetCriterion (sod2/modeling/criterion/set_criterion.py) against naive loops written
here: VFL / L1 / GIoU of each output set with the weights and the normaliser pinned (num_boxes,
its all-reduce over processes, the denoising groups), per-set matching (Hungarian sets matched
on their own outputs, dn sets on the fixed assignment), the loss names, empty targets, the
detached class target, and the template methods a method subclass overrides (Better Sampling's
subclass: tests/methods/better_sampling/test_better_sampling_criterion.py). The matcher is a
stand-in that returns a fixed assignment and records its calls."""
import math

import pytest
import torch
import torchvision

from sod2.modeling.criterion import OutputSet, SetCriterion
from sod2.modeling.criterion import set_criterion as set_criterion_module
from sod2.modeling.transformer import DecoderLayerOutput, EncoderOutput

C = 3
WEIGHTS = {"loss_vfl": 2.0, "loss_bbox": 3.0, "loss_giou": 7.0}
ALPHA, GAMMA = 0.6, 1.5


class FixedMatcher:
    """Returns the same assignment for every set and records the logits it was called with."""

    def __init__(self, indices):
        self.indices = indices
        self.calls = []

    def __call__(self, logits, boxes, targets):
        self.calls.append(logits.clone())
        return [(torch.tensor(q), torch.tensor(t)) for q, t in self.indices]


def make_targets():
    return [{"labels": torch.tensor([2, 0]), "boxes": torch.tensor([[0.30, 0.40, 0.20, 0.10],
                                                                     [0.70, 0.60, 0.10, 0.30]])},
            {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.50, 0.50, 0.40, 0.40]])}]


# query 3 of image 0 <- gt 0, query 1 <- gt 1; query 0 of image 1 <- gt 0
INDICES = [([3, 1], [1, 0]), ([0], [0])]


def make_output(name, seed, B=2, N=4, D=5, offsets=False, layer_index=0):
    """An output set as RTDETR.loss_sets builds it: "enc" an EncoderOutput, the others a
    DecoderLayerOutput (with sampling offsets/attention if asked), "dn_*" a denoising set."""
    g = torch.Generator().manual_seed(seed)
    fields = {"logits": torch.randn(B, N, C, generator=g).requires_grad_(True),
              "boxes": torch.cat([0.3 + 0.4 * torch.rand(B, N, 2, generator=g),
                                  0.05 + 0.3 * torch.rand(B, N, 2, generator=g)], -1).requires_grad_(True),
              "hidden": torch.randn(B, N, D, generator=g), "box_hidden": torch.randn(B, N, D, generator=g)}
    if name == "enc":
        return OutputSet(name, EncoderOutput(**fields))
    if offsets:
        fields["offsets"] = (10 * torch.rand(B, N, 2, 2, 2, 2, generator=g) - 5).requires_grad_(True)
        fields["attention"] = torch.rand(B, N, 2, 2, 2, generator=g).requires_grad_(True)
    return OutputSet(name, DecoderLayerOutput(layer_index=layer_index, **fields), denoising=name.startswith("dn_"))


def iou_tv(p, g):
    """IoU and GIoU of two cxcywh lists through torchvision's pairwise ops."""
    a = torchvision.ops.box_convert(torch.tensor([p], dtype=torch.float64), "cxcywh", "xyxy")
    b = torchvision.ops.box_convert(torch.tensor([g], dtype=torch.float64), "cxcywh", "xyxy")
    return torchvision.ops.box_iou(a, b).item(), torchvision.ops.generalized_box_iou(a, b).item()


def naive_set_losses(out, targets, indices, normalizer, target_fn=None, r_cls=None, r_reg=None,
                     cls_weight="replace", alpha=ALPHA, gamma=GAMMA, weights=WEIGHTS):
    """Weighted losses of one set by explicit loops over images, queries and classes."""
    logits, boxes = out.output.logits.detach().double(), out.output.boxes.detach().double()
    B, N, _ = logits.shape
    matched, k = {}, 0
    for b, (qs, ts) in enumerate(indices):
        for q, t in zip(qs, ts):
            q, t = int(q), int(t)
            matched[(b, q)] = (int(targets[b]["labels"][t]), targets[b]["boxes"][t].double().tolist(), k)
            k += 1
    vfl = l1 = giou_l = 0.0
    for b in range(B):
        for q in range(N):
            pred = boxes[b, q].tolist()
            m = matched.get((b, q))
            if m is not None:
                label, gt, k = m
                iou, giou = iou_tv(pred, gt)
                tgt = iou if target_fn is None else target_fn(pred, gt)
                rr = 1.0 if r_reg is None else r_reg[k]
                l1 += rr * sum(abs(x - y) for x, y in zip(pred, gt))
                giou_l += rr * (1 - giou)
            for c in range(C):
                p = sigmoid(logits[b, q, c].item())
                if m is not None and c == m[0]:
                    w = tgt if r_cls is None else (r_cls[m[2]] if cls_weight == "replace" else r_cls[m[2]] * tgt)
                    vfl += w * -(tgt * math.log(p) + (1 - tgt) * math.log(1 - p))
                else:
                    vfl += alpha * p ** gamma * -math.log(1 - p)
    return {"loss_vfl": weights["loss_vfl"] * vfl / normalizer, "loss_bbox": weights["loss_bbox"] * l1 / normalizer,
            "loss_giou": weights["loss_giou"] * giou_l / normalizer}


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def make_criterion(matcher=None, **kw):
    kw.setdefault("weight_dict", WEIGHTS)
    kw.setdefault("alpha", ALPHA)
    kw.setdefault("gamma", GAMMA)
    return SetCriterion(matcher=matcher or FixedMatcher(INDICES), num_classes=C, **kw)


def check(losses, expected, suffix=""):
    for k, v in expected.items():
        assert losses[k + suffix].item() == pytest.approx(v, rel=2e-5), k + suffix


# ------------------------------------------------------------------ plain RT-DETR
def test_single_set_vs_naive():
    out, targets = make_output("", 0), make_targets()
    losses = make_criterion()([out], targets)
    assert set(losses) == {"loss_vfl", "loss_bbox", "loss_giou"}
    check(losses, naive_set_losses(out, targets, INDICES, normalizer=3.0))


def test_default_weights_and_vfl_parameters():
    out, targets = make_output("", 1), make_targets()
    losses = SetCriterion(matcher=FixedMatcher(INDICES), num_classes=C)([out], targets)
    weights = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    check(losses, naive_set_losses(out, targets, INDICES, 3.0, alpha=0.75, gamma=2.0, weights=weights))
    with pytest.raises(ValueError):
        SetCriterion(matcher=FixedMatcher(INDICES), num_classes=C, weight_dict={"loss_cls": 1.0})


class Denoising:
    def __init__(self, positive_index, gt_index, num_groups):
        self.positive_index, self.gt_index, self.num_groups = positive_index, gt_index, num_groups


def test_sets_names_matching_and_dn_normaliser():
    targets = make_targets()
    # two groups of [2 positives, 2 negatives] per image (padded to max_gt 2)
    dn = Denoising([torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])],
                   [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0])], num_groups=2)
    dn_indices = [([0, 1, 4, 5], [0, 1, 0, 1]), ([0, 4], [0, 0])]
    outputs = [make_output("", 0), make_output("aux_0", 1), make_output("enc", 2),
               make_output("dn_0", 3, N=8), make_output("dn_1", 4, N=8)]
    matcher = FixedMatcher(INDICES)
    losses = make_criterion(matcher)(outputs, targets, dn)
    assert set(losses) == {f"{k}{s}" for k in ("loss_vfl", "loss_bbox", "loss_giou")
                           for s in ("", "_aux_0", "_enc", "_dn_0", "_dn_1")}
    # each ordinary set matched once, on its own logits; dn sets never reach the matcher
    assert len(matcher.calls) == 3
    for call, out in zip(matcher.calls, outputs[:3]):
        assert torch.equal(call, out.output.logits.detach())
    for out in outputs[:3]:
        check(losses, naive_set_losses(out, targets, INDICES, 3.0), f"_{out.name}" if out.name else "")
    for out in outputs[3:]:  # num_boxes 3 x 2 groups
        check(losses, naive_set_losses(out, targets, dn_indices, 6.0), f"_{out.name}")
    with pytest.raises(ValueError):
        make_criterion()(outputs, targets, None)
    with pytest.raises(ValueError):
        make_criterion()([make_output("", 0), make_output("", 1)], targets)


def test_num_boxes_all_reduced(monkeypatch):
    calls = []

    def fake_all_reduce(t):  # the other process holds 5 boxes
        calls.append(t.clone())
        t += 5.0

    monkeypatch.setattr(set_criterion_module.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(set_criterion_module.dist, "all_reduce", fake_all_reduce)
    targets = make_targets()
    assert SetCriterion.num_boxes(targets, torch.device("cpu")) == 4.0  # (3 + 5) / 2
    out = make_output("", 0)
    check(make_criterion()([out], targets), naive_set_losses(out, targets, INDICES, 4.0))
    assert calls[0].item() == 3.0
    monkeypatch.setattr(set_criterion_module.dist, "all_reduce", lambda t: None)
    assert SetCriterion.num_boxes(targets, torch.device("cpu")) == 1.5
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    assert SetCriterion.num_boxes(empty, torch.device("cpu")) == 1.0  # clamped


def test_empty_targets_finite_with_gradient():
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    out = make_output("", 0)
    losses = make_criterion(FixedMatcher([([], []), ([], [])]))([out], empty)
    expected = naive_set_losses(out, empty, [([], []), ([], [])], 1.0)
    check(losses, expected)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert out.output.logits.grad.abs().sum() > 0
    assert out.output.boxes.grad is not None and torch.equal(out.output.boxes.grad, torch.zeros_like(out.output.boxes))
    # one image empty, the other not
    targets = [empty[0], make_targets()[1]]
    idx = [([], []), ([2], [0])]
    out = make_output("", 5)
    check(make_criterion(FixedMatcher(idx))([out], targets), naive_set_losses(out, targets, idx, 1.0))


def test_class_target_is_detached():
    out, targets = make_output("", 0), make_targets()
    losses = make_criterion()([out], targets)
    losses["loss_vfl"].backward()
    assert out.output.boxes.grad is None or out.output.boxes.grad.abs().sum() == 0


def test_with_hungarian_matcher():
    from sod2.modeling.matchers.hungarian import HungarianMatcher

    out, targets = make_output("", 0), make_targets()
    indices = HungarianMatcher()(out.output.logits.detach(), out.output.boxes.detach(), targets)
    idx = [(q.tolist(), t.tolist()) for q, t in indices]
    check(make_criterion(HungarianMatcher())([out], targets), naive_set_losses(out, targets, idx, 3.0))


def test_template_methods_defaults_and_a_subclass():
    """RT-DETR's defaults, and what a method's subclass can change through the templates."""
    from sod2.modeling.criterion import PositiveWeights

    plain = make_criterion()
    assert plain.required_outputs == frozenset() and plain.vfl_alpha_gamma() == (ALPHA, GAMMA)
    r_cls, r_reg = [0.5, 2.0, 1.5], [3.0, 0.25, 0.8]

    class Method(SetCriterion):
        default_weight_dict = {**SetCriterion.default_weight_dict, "loss_extra": 1.0}

        def class_target(self, output_set, pos, pred_boxes):
            return torch.full((len(pos),), 0.5)

        def positive_weights(self, output_set, pos, target, logits):
            return PositiveWeights(vfl=torch.tensor(r_cls), boxes=torch.tensor(r_reg))

        def extra_terms(self, output_set, pos):
            return {"loss_extra": torch.tensor(float(len(pos)))}

        def vfl_alpha_gamma(self):
            return 0.4, 1.0

        def finish(self, losses, weights):
            self.seen = len(weights)
            return {**losses, "loss_finished": torch.tensor(0.0)}

    out, targets = make_output("aux_1", 4), make_targets()
    crit = Method(matcher=FixedMatcher(INDICES), num_classes=C, weight_dict={**WEIGHTS, "loss_extra": 6.0})
    losses = crit([out], targets)
    check(losses, naive_set_losses(out, targets, INDICES, 3.0, target_fn=lambda p, g: 0.5, r_cls=r_cls, r_reg=r_reg,
                                   alpha=0.4, gamma=1.0), "_aux_1")
    assert losses["loss_extra_aux_1"].item() == pytest.approx(6.0 * 3 / 3.0)
    assert "loss_finished" in losses and crit.seen == 1
    with pytest.raises(ValueError, match="loss_extra"):
        SetCriterion(matcher=FixedMatcher(INDICES), num_classes=C, weight_dict={"loss_extra": 1.0})
