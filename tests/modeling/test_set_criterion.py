"""RT-DETR's SetCriterion (sod2/modeling/criterion/set_criterion.py) against naive loops written
here: VFL / L1 / GIoU of each output set with the weights and the normaliser pinned (num_boxes,
its all-reduce over processes, the denoising groups), per-set matching (Hungarian sets matched
on their own outputs, dn sets on the fixed assignment), the loss names, empty targets, the
detached class target, and Better Sampling's ST / SR / SPR inside the criterion. The matcher is
a stand-in that returns a fixed assignment and records its calls."""
import math

import pytest
import torch
import torchvision
from detectron2.utils.events import EventStorage
from torch import nn

from sod2.modeling.criterion import SetCriterion
from sod2.modeling.methods.better_sampling import SamplePointRefinement, SampleReweighting, ScaleAlignedTarget
from sod2.modeling.criterion import set_criterion as set_criterion_module

C = 3
WEIGHTS = {"loss_vfl": 2.0, "loss_bbox": 3.0, "loss_giou": 7.0, "loss_offset": 0.5, "loss_atten": 4.0}
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
    g = torch.Generator().manual_seed(seed)
    out = {"name": name,
           "logits": torch.randn(B, N, C, generator=g).requires_grad_(True),
           "boxes": torch.cat([0.3 + 0.4 * torch.rand(B, N, 2, generator=g),
                               0.05 + 0.3 * torch.rand(B, N, 2, generator=g)], -1).requires_grad_(True),
           "hidden": torch.randn(B, N, D, generator=g), "box_hidden": torch.randn(B, N, D, generator=g)}
    if offsets:
        out["offsets"] = (10 * torch.rand(B, N, 2, 2, 2, 2, generator=g) - 5).requires_grad_(True)
        out["attention"] = torch.rand(B, N, 2, 2, 2, generator=g).requires_grad_(True)
        out["layer_index"] = layer_index
    return out


def iou_tv(p, g):
    """IoU and GIoU of two cxcywh lists through torchvision's pairwise ops."""
    a = torchvision.ops.box_convert(torch.tensor([p], dtype=torch.float64), "cxcywh", "xyxy")
    b = torchvision.ops.box_convert(torch.tensor([g], dtype=torch.float64), "cxcywh", "xyxy")
    return torchvision.ops.box_iou(a, b).item(), torchvision.ops.generalized_box_iou(a, b).item()


def naive_set_losses(out, targets, indices, normalizer, target_fn=None, r_cls=None, r_reg=None,
                     cls_weight="replace", alpha=ALPHA, gamma=GAMMA, weights=WEIGHTS):
    """Weighted losses of one set by explicit loops over images, queries and classes."""
    logits, boxes = out["logits"].detach().double(), out["boxes"].detach().double()
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
        assert torch.equal(call, out["logits"].detach())
    for out in outputs[:3]:
        check(losses, naive_set_losses(out, targets, INDICES, 3.0), f"_{out['name']}" if out["name"] else "")
    for out in outputs[3:]:  # num_boxes 3 x 2 groups
        check(losses, naive_set_losses(out, targets, dn_indices, 6.0), f"_{out['name']}")
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
    assert out["logits"].grad.abs().sum() > 0
    assert out["boxes"].grad is not None and torch.equal(out["boxes"].grad, torch.zeros_like(out["boxes"]))
    # one image empty, the other not
    targets = [empty[0], make_targets()[1]]
    idx = [([], []), ([2], [0])]
    out = make_output("", 5)
    check(make_criterion(FixedMatcher(idx))([out], targets), naive_set_losses(out, targets, idx, 1.0))


def test_class_target_is_detached():
    out, targets = make_output("", 0), make_targets()
    losses = make_criterion()([out], targets)
    losses["loss_vfl"].backward()
    assert out["boxes"].grad is None or out["boxes"].grad.abs().sum() == 0


# ------------------------------------------------------------------- Better Sampling
def st_hand(pred, gt, beta=0.73, theta=6.0):
    u, _ = iou_tv(pred, gt)
    r = math.sqrt(pred[2] * pred[3] / (gt[2] * gt[3]))
    return u ** beta * math.exp(-theta * (r - 1) ** 2) ** (1 - beta)


def test_scale_aligned_target_in_criterion():
    out, targets = make_output("", 2), make_targets()
    losses = make_criterion(class_target=ScaleAlignedTarget(beta=0.5, theta=3.0))([out], targets)
    check(losses, naive_set_losses(out, targets, INDICES, 3.0, target_fn=lambda p, g: st_hand(p, g, 0.5, 3.0)))
    plain = make_criterion()([out], targets)
    assert losses["loss_vfl"].item() != pytest.approx(plain["loss_vfl"].item(), rel=1e-4)
    assert losses["loss_bbox"].item() == pytest.approx(plain["loss_bbox"].item())


class StubReweighting(nn.Module):
    """Fixed weights per call (in the criterion's positive order); records its inputs."""

    def __init__(self, r_cls, r_reg, cls_weight="replace"):
        super().__init__()
        self.r_cls, self.r_reg, self.cls_weight = r_cls, r_reg, cls_weight
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, h_cls, h_reg, target, score):
        self.calls.append((h_cls, h_reg, target, score))
        n = h_cls.shape[0]
        return torch.tensor(self.r_cls[:n]) * self.scale, torch.tensor(self.r_reg[:n]) * self.scale


@pytest.mark.parametrize("cls_weight", ["replace", "scale"])
def test_reweighting_in_criterion(cls_weight):
    out, targets = make_output("", 3), make_targets()
    r_cls, r_reg = [0.5, 2.0, 1.5], [3.0, 0.25, 0.8]
    stub = StubReweighting(r_cls, r_reg, cls_weight)
    with EventStorage() as storage:
        losses = make_criterion(reweighting=stub)([out, make_output("aux_0", 4)], targets)
        latest = {k: v[0] for k, v in storage.latest().items()}
    check(losses, naive_set_losses(out, targets, INDICES, 3.0, r_cls=r_cls, r_reg=r_reg, cls_weight=cls_weight))
    # inputs: positives in image order then matcher order: (0, 3) <- gt 1, (0, 1) <- gt 0, (1, 0) <- gt 0
    h_cls, h_reg, target, score = stub.calls[0]
    pairs = [(0, 3, 1), (0, 1, 0), (1, 0, 0)]
    assert torch.equal(h_cls, torch.stack([out["hidden"][b, q] for b, q, _ in pairs]))
    assert torch.equal(h_reg, torch.stack([out["box_hidden"][b, q] for b, q, _ in pairs]))
    for k, (b, q, g) in enumerate(pairs):
        label = int(targets[b]["labels"][g])
        assert score[k].item() == pytest.approx(sigmoid(out["logits"][b, q, label].item()), rel=1e-6)
        assert target[k].item() == pytest.approx(iou_tv(out["boxes"][b, q].tolist(),
                                                        targets[b]["boxes"][g].tolist())[0], rel=1e-5)
    assert not score.requires_grad and not target.requires_grad
    # statistics pooled over both sets' positives
    pooled = torch.tensor(r_cls * 2)
    assert latest["better_sampling/r_cls_mean"] == pytest.approx(pooled.mean().item())
    assert latest["better_sampling/r_cls_std"] == pytest.approx(pooled.std().item())
    assert latest["better_sampling/r_reg_mean"] == pytest.approx(sum(r_reg) / 3)
    sum(losses.values()).backward()
    assert stub.scale.grad is not None and stub.scale.grad != 0


def test_reweighting_requires_features():
    out = make_output("", 0)
    del out["box_hidden"]
    with pytest.raises(ValueError):
        make_criterion(reweighting=StubReweighting([1.0] * 3, [1.0] * 3))([out], make_targets())


def test_real_reweighting_gradients_and_ddp_safety():
    out, targets = make_output("", 0), make_targets()
    sr = SampleReweighting(hidden_dim=5)
    losses = make_criterion(reweighting=sr)([out, make_output("enc", 1)], targets)
    sum(losses.values()).backward()
    assert sr.conv1.weight.grad.abs().sum() > 0 and sr.norm_cls.weight.grad is not None
    # no positive anywhere / detached weights: every parameter still gets a (zero) gradient
    empty = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}] * 2
    for module, tgts, idx in ((SampleReweighting(hidden_dim=5), empty, [([], []), ([], [])]),
                              (SampleReweighting(hidden_dim=5, detach_normalize=True), targets, INDICES)):
        losses = make_criterion(FixedMatcher(idx), reweighting=module)([make_output("", 0)], tgts)
        total = sum(losses.values())
        assert torch.isfinite(total)
        total.backward()
        assert all(p.grad is not None and p.grad.abs().sum() == 0 for p in module.parameters())


def naive_spr(offsets, attention, eta):
    """Per point loops: box-relative |d| = |offset| / (2 n_points), inside iff both <= 0.5."""
    M, L, P = len(attention), len(attention[0]), len(attention[0][0])
    lo = la = 0.0
    for m in range(M):
        for l in range(L):
            inside = [all(abs(v) / (2 * P) <= 0.5 for v in offsets[m][l][k]) for k in range(P)]
            best = max([attention[m][l][k] for k in range(P) if inside[k]], default=0.0)
            for k in range(P):
                if not inside[k]:
                    lo += sum(max(abs(v) / (2 * P) - eta / 2, 0.0) for v in offsets[m][l][k]) ** 2
                    la += max(attention[m][l][k] - best, 0.0)
    return lo, la


def test_point_refinement_in_criterion():
    targets = make_targets()
    last, aux = make_output("", 6, offsets=True, layer_index=1), make_output("aux_0", 7, offsets=True, layer_index=0)
    enc = make_output("enc", 8)
    with torch.no_grad():  # unmatched queries far outside: must not count
        for o in (last, aux):
            o["offsets"][0, 0] = 50.0
            o["offsets"][1, 2] = -50.0
    spr = SamplePointRefinement(etas=(1.5, 1.0), num_points=2)
    losses = make_criterion(point_refinement=spr)([last, aux, enc], targets)
    assert "loss_offset_enc" not in losses and "loss_atten_enc" not in losses
    pairs = [(0, 3), (0, 1), (1, 0)]
    for out, eta, suffix in ((last, 1.0, ""), (aux, 1.5, "_aux_0")):
        lo = la = 0.0
        for b, q in pairs:
            a, c = naive_spr(out["offsets"][b, q].tolist(), out["attention"][b, q].tolist(), eta)
            lo, la = lo + a, la + c
        assert lo > 0 and la > 0
        assert losses["loss_offset" + suffix].item() == pytest.approx(WEIGHTS["loss_offset"] * lo / 3.0, rel=1e-5)
        assert losses["loss_atten" + suffix].item() == pytest.approx(WEIGHTS["loss_atten"] * la / 3.0, rel=1e-5)
    check(losses, naive_set_losses(last, targets, INDICES, 3.0))
    sum(losses.values()).backward()
    assert last["offsets"].grad[0, 0].abs().sum() == 0 and last["offsets"].grad[0, 3].abs().sum() > 0


def test_point_refinement_dn_normaliser():
    targets = make_targets()
    dn = Denoising([torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])],
                   [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0])], num_groups=2)
    out = make_output("dn_0", 9, N=8, offsets=True, layer_index=0)
    losses = make_criterion(point_refinement=SamplePointRefinement(etas=(1.0,), num_points=2))([out], targets, dn)
    lo = sum(naive_spr(out["offsets"][b, q].tolist(), out["attention"][b, q].tolist(), 1.0)[0]
             for b, q in [(0, 0), (0, 1), (0, 4), (0, 5), (1, 0), (1, 4)])
    assert losses["loss_offset_dn_0"].item() == pytest.approx(WEIGHTS["loss_offset"] * lo / 6.0, rel=1e-5)


def test_with_hungarian_matcher_if_present():
    hungarian = pytest.importorskip("sod2.modeling.matchers.hungarian")
    out, targets = make_output("", 0), make_targets()
    indices = hungarian.HungarianMatcher()(out["logits"].detach(), out["boxes"].detach(), targets)
    idx = [(q.tolist(), t.tolist()) for q, t in indices]
    check(make_criterion(hungarian.HungarianMatcher())([out], targets), naive_set_losses(out, targets, idx, 3.0))
    crit = SetCriterion(matcher=hungarian.HungarianMatcher(), num_classes=C, class_target=ScaleAlignedTarget(),
                        reweighting=SampleReweighting(hidden_dim=5))
    losses = crit([out, make_output("aux_0", 1)], targets)
    assert all(torch.isfinite(v) for v in losses.values())
