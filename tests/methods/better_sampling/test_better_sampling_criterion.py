"""BetterSamplingCriterion (sod2/modeling/methods/better_sampling/criterion.py), RT-DETR's set
criterion with Better Sampling injected, against the naive loops of
tests/modeling/test_set_criterion.py: ST's target, SR's weights (both ``cls_weight`` modes, its
inputs, the pooled statistics, DDP safety), SPR's terms per decoder layer (not the encoder's
set; the denoising normaliser), the paper's VFL alpha/gamma while on and RT-DETR's when
``better_sampling`` is None, and the decoder fields it asks for."""
import math

import pytest
import torch
from detectron2.utils.events import EventStorage

from sod2.modeling.criterion import SetCriterion
from sod2.modeling.methods.better_sampling import (BetterSampling, BetterSamplingCriterion, SamplePointRefinement,
                                                   SampleReweighting, ScaleAlignedTarget)

from ...modeling.test_set_criterion import (ALPHA, C, GAMMA, INDICES, Denoising, FixedMatcher, check, iou_tv,
                                            make_output, make_targets, naive_set_losses, sigmoid)

WEIGHTS = {"loss_vfl": 2.0, "loss_bbox": 3.0, "loss_giou": 7.0, "loss_offset": 0.5, "loss_atten": 4.0}


def make_criterion(matcher=None, class_target=None, reweighting=None, point_refinement=None, **kw):
    """Better Sampling with the given parts and the test's VFL ALPHA / GAMMA (RT-DETR's on the
    criterion: 0.75 / 2.0)."""
    bs = BetterSampling(class_target=class_target, reweighting=reweighting, point_refinement=point_refinement,
                        vfl_alpha=ALPHA, vfl_gamma=GAMMA)
    kw.setdefault("weight_dict", WEIGHTS)
    return BetterSamplingCriterion(better_sampling=bs, matcher=matcher or FixedMatcher(INDICES), num_classes=C, **kw)


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


class StubReweighting(SampleReweighting):
    """Fixed weights per call (in the criterion's positive order) times one parameter ``scale``;
    records its inputs."""

    def __init__(self, r_cls, r_reg, cls_weight="replace"):
        super().__init__(hidden_dim=5, cls_weight=cls_weight)
        self.r_cls, self.r_reg = r_cls, r_reg
        self.scale = torch.nn.Parameter(torch.ones(()))
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
    assert torch.equal(h_cls, torch.stack([out.output.hidden[b, q] for b, q, _ in pairs]))
    assert torch.equal(h_reg, torch.stack([out.output.box_hidden[b, q] for b, q, _ in pairs]))
    for k, (b, q, g) in enumerate(pairs):
        label = int(targets[b]["labels"][g])
        assert score[k].item() == pytest.approx(sigmoid(out.output.logits[b, q, label].item()), rel=1e-6)
        assert target[k].item() == pytest.approx(iou_tv(out.output.boxes[b, q].tolist(),
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
    del out.output.box_hidden
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
            o.output.offsets[0, 0] = 50.0
            o.output.offsets[1, 2] = -50.0
    spr = SamplePointRefinement(etas=(1.5, 1.0), num_points=2)
    losses = make_criterion(point_refinement=spr)([last, aux, enc], targets)
    assert "loss_offset_enc" not in losses and "loss_atten_enc" not in losses
    pairs = [(0, 3), (0, 1), (1, 0)]
    for out, eta, suffix in ((last, 1.0, ""), (aux, 1.5, "_aux_0")):
        lo = la = 0.0
        for b, q in pairs:
            a, c = naive_spr(out.output.offsets[b, q].tolist(), out.output.attention[b, q].tolist(), eta)
            lo, la = lo + a, la + c
        assert lo > 0 and la > 0
        assert losses["loss_offset" + suffix].item() == pytest.approx(WEIGHTS["loss_offset"] * lo / 3.0, rel=1e-5)
        assert losses["loss_atten" + suffix].item() == pytest.approx(WEIGHTS["loss_atten"] * la / 3.0, rel=1e-5)
    check(losses, naive_set_losses(last, targets, INDICES, 3.0))
    sum(losses.values()).backward()
    assert last.output.offsets.grad[0, 0].abs().sum() == 0 and last.output.offsets.grad[0, 3].abs().sum() > 0


def test_point_refinement_dn_normaliser():
    targets = make_targets()
    dn = Denoising([torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])],
                   [torch.tensor([0, 1, 0, 1]), torch.tensor([0, 0])], num_groups=2)
    out = make_output("dn_0", 9, N=8, offsets=True, layer_index=0)
    losses = make_criterion(point_refinement=SamplePointRefinement(etas=(1.0,), num_points=2))([out], targets, dn)
    lo = sum(naive_spr(out.output.offsets[b, q].tolist(), out.output.attention[b, q].tolist(), 1.0)[0]
             for b, q in [(0, 0), (0, 1), (0, 4), (0, 5), (1, 0), (1, 4)])
    assert losses["loss_offset_dn_0"].item() == pytest.approx(WEIGHTS["loss_offset"] * lo / 6.0, rel=1e-5)


def test_with_hungarian_matcher():
    from sod2.modeling.matchers.hungarian import HungarianMatcher

    out, targets = make_output("", 0), make_targets()
    crit = make_criterion(HungarianMatcher(), class_target=ScaleAlignedTarget(),
                          reweighting=SampleReweighting(hidden_dim=5))
    losses = crit([out, make_output("aux_0", 1)], targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_paper_vfl_while_on_and_rtdetr_vfl_when_off():
    out, targets = make_output("", 1), make_targets()
    weights = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    on = BetterSamplingCriterion(better_sampling=BetterSampling(), matcher=FixedMatcher(INDICES), num_classes=C)
    assert on.vfl_alpha_gamma() == (0.5, 1.5)
    check(on([out], targets), naive_set_losses(out, targets, INDICES, 3.0, alpha=0.5, gamma=1.5, weights=weights))
    off = BetterSamplingCriterion(better_sampling=None, matcher=FixedMatcher(INDICES), num_classes=C)
    plain = SetCriterion(matcher=FixedMatcher(INDICES), num_classes=C)
    assert off.vfl_alpha_gamma() == plain.vfl_alpha_gamma() == (0.75, 2.0)
    assert off.required_outputs == frozenset() and list(off.state_dict()) == []
    got, want = off([out], targets), plain([out], targets)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_required_outputs_follow_the_parts():
    def fields(**parts):
        return make_criterion(**parts).required_outputs

    assert fields() == frozenset()
    assert fields(class_target=ScaleAlignedTarget()) == frozenset()
    assert fields(reweighting=SampleReweighting(hidden_dim=5)) == {"hidden", "box_hidden"}
    assert fields(point_refinement=SamplePointRefinement()) == {"offsets", "attention"}


def test_point_refinement_needs_the_sampling_fields():
    out = make_output("", 0)  # a decoder layer without offsets / attention
    with pytest.raises(ValueError, match="offsets"):
        make_criterion(point_refinement=SamplePointRefinement(etas=(1.0,), num_points=2))([out], make_targets())


def test_bad_vfl_parameters_are_one_line_errors():
    from sod2.errors import UserError

    for kw in ({"vfl_alpha": float("nan")}, {"vfl_gamma": -1.0}, {"vfl_alpha": "0.5"}):
        with pytest.raises(UserError, match="BetterSampling: vfl_"):
            BetterSampling(**kw)
    with pytest.raises(UserError, match="reweighting"):
        BetterSampling(reweighting=torch.nn.Linear(2, 2))
    with pytest.raises(UserError, match="class_target"):
        BetterSampling(class_target=0.5)
