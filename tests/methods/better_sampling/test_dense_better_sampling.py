"""Better Sampling's dense parts on sod2's YOLOX (``BetterSamplingYOLOX``; its ``better_sampling``'s
``class_target`` = ST, ``reweighting`` = SR): without them the losses are plain YOLOX's bit for
bit; ST's class targets against hand values of ``c = u^beta v^(1-beta)``; SR's weighted losses
against an independent recomputation with hand-set generator weights; the features gathered at
the positives; the width check and SPR's refusal; the config (training steps with empty and
non-empty ground truth, then inference); inference unchanged."""
import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from sod2.config import get_config
from sod2.errors import UserError
from sod2.layers.losses import box_iou_loss
from sod2.modeling.heads import YOLOXHeadOutput
from sod2.modeling.meta_arch.yolox import YOLOXStep
from sod2.modeling.methods.better_sampling import (BetterSampling, BetterSamplingYOLOX, SamplePointRefinement,
                                                   SampleReweighting, ScaleAlignedTarget, gather_locations)

from ...modeling.test_yolox import _loss_setup, bce_logit
from ...modeling.test_yolox import build_yolox as _build_yolox
from ...modeling.test_yolox import sigmoid

CONFIG = "bsdetr/bs_yolox_tiny_p2_synthetic.py"


def build_yolox(num_classes=2, class_target=None, reweighting=None, **kwargs):
    """test_yolox's small YOLOX (width 0.125, P3-P5) with 2 classes by default, as a
    BetterSamplingYOLOX with ST ``class_target`` and SR ``reweighting`` (both None: off)."""
    bs = None if class_target is None and reweighting is None else \
        BetterSampling(class_target=class_target, reweighting=reweighting)
    return _build_yolox(num_classes=num_classes, arch=BetterSamplingYOLOX, better_sampling=bs, **kwargs)


def set_parts(model, class_target=None, reweighting=None):
    """Replace the model's Better Sampling parts after construction (hand-built generators are D
    wide, not the head's width)."""
    model.better_sampling = BetterSampling(class_target=class_target, reweighting=reweighting)


def losses_of(model, preds, gts, assign, features=None):
    """``model.losses`` of a training step built from hand-made predictions (and the head's
    ``(cls_feats, reg_feats)``, read only by SR)."""
    head = None if features is None else YOLOXHeadOutput(features[0], features[1], [], [], [])
    return model.losses(YOLOXStep(preds, head=head, gt_instances=gts, assignments=assign))


D = 3  # feature width of the hand-built setup


def _setup():
    """2 images x 3 locations (one level of 1 x 3) x 2 classes; image 0 has 2 gts and 2 fg
    locations (0 -> gt 1 of class 1, 2 -> gt 0 of class 0), image 1 has none; branch
    features (2, D, 1, 3)."""
    g = torch.Generator().manual_seed(0)
    preds, gts, assign = _loss_setup(grids=((0.0, 0.0), (1.0, 0.0), (2.0, 0.0)), level_sizes=((1, 3),), g=g)
    cls_feats = [torch.randn(2, D, 1, 3, generator=g)]
    reg_feats = [torch.randn(2, D, 1, 3, generator=g)]
    return preds, gts, assign, (cls_feats, reg_feats)


# pairs (pred, gt) of the two positives, XYXY: location 0 -> gt 1, location 2 -> gt 0
POS = [([2.0, 2.0, 18.0, 14.0], [4.0, 4.0, 20.0, 12.0]), ([1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0])]
POS_LOC, POS_CLS = [0, 2], [1, 0]
U = [112.0 / 208.0, 81.0 / 100.0]  # IoU of each pair


def _st_hand(beta=0.73, theta=6.0):
    """c = u^beta v^(1-beta), v = exp(-theta (sqrt(rho) - 1)^2), by hand for POS."""
    rho = [192.0 / 128.0, 81.0 / 100.0]  # areas 16x12 / 16x8 and 9x9 / 10x10
    return [u ** beta * math.exp(-theta * (math.sqrt(r) - 1) ** 2) ** (1 - beta) for u, r in zip(U, rho)]


def _plain_reference(preds, gts, assign, iou_loss_type="iou", use_l1=True, targets=None, r_cls=None, r_reg=None):
    """Plain YOLOX's losses written out with torch ops, independently of YOLOX.losses (the
    pre-Better-Sampling code path), optionally with per-positive targets and weights."""
    fg = torch.stack([a.fg_mask for a in assign])
    cls_t = torch.cat([F.one_hot(g.gt_classes[a.matched_gt].long(), 2).float() * a.matched_iou[:, None].float()
                       for a, g in zip(assign, gts)])
    if targets is not None:
        cls_t = F.one_hot(torch.tensor(POS_CLS), 2).float() * targets[:, None]
    box_t = torch.cat([g.gt_boxes.tensor[a.matched_gt] for a, g in zip(assign, gts)])
    num_fg = 2.0
    out = {}
    if r_reg is None:
        out["loss_iou"] = 5.0 * (box_iou_loss(preds.boxes[fg], box_t, iou_loss_type, reduction="sum") / num_fg)
    else:
        out["loss_iou"] = 5.0 * ((box_iou_loss(preds.boxes[fg], box_t, iou_loss_type) * r_reg).sum() / num_fg)
    out["loss_obj"] = F.binary_cross_entropy_with_logits(preds.obj_logits, fg.float(), reduction="sum") / num_fg
    if r_cls is None:
        out["loss_cls"] = F.binary_cross_entropy_with_logits(preds.cls_logits[fg], cls_t, reduction="sum") / num_fg
    else:
        out["loss_cls"] = (F.binary_cross_entropy_with_logits(preds.cls_logits[fg], cls_t, reduction="none").sum(1)
                           * r_cls).sum() / num_fg
    if use_l1:
        loc = fg.nonzero()[:, 1]
        s, grid = preds.strides[loc][:, None], preds.grids[loc]
        cxcy, wh = (box_t[:, :2] + box_t[:, 2:]) / 2, box_t[:, 2:] - box_t[:, :2]
        l1_t = torch.cat([cxcy / s - grid, torch.log(wh / s + 1e-8)], 1)
        if r_reg is None:
            out["loss_l1"] = F.l1_loss(preds.reg[fg], l1_t, reduction="sum") / num_fg
        else:
            out["loss_l1"] = (F.l1_loss(preds.reg[fg], l1_t, reduction="none").sum(1) * r_reg).sum() / num_fg
    return out


# ------------------------------------------------------------ plain path
@pytest.mark.parametrize("iou_loss_type", ["iou", "ciou"])
def test_without_st_and_sr_losses_are_plain_yolox_bit_for_bit(iou_loss_type):
    model = build_yolox(use_l1=True, iou_loss_type=iou_loss_type)
    assert model.better_sampling is None
    assert not any("reweighting" in n for n, _ in model.named_parameters())
    preds, gts, assign, feats = _setup()
    expect = _plain_reference(preds, gts, assign, iou_loss_type)
    for features in (None, feats):  # the features are read only by SR
        losses = losses_of(model, preds, gts, assign, features=features)
        for k, v in expect.items():
            assert torch.equal(losses[k], v), k
    # the hand values of the plain cls loss (targets = SimOTA's matched IoU 0.5, 0.25)
    c = preds.cls_logits.tolist()
    exp_cls = (bce_logit(c[0][0][0], 0.0) + bce_logit(c[0][0][1], 0.5)
               + bce_logit(c[0][2][0], 0.25) + bce_logit(c[0][2][1], 0.0)) / 2
    assert losses["loss_cls"].item() == pytest.approx(exp_cls, rel=1e-6)


def test_forward_hands_the_branch_features_to_the_losses():
    torch.manual_seed(0)
    model = build_yolox(num_classes=3).train()
    seen = {}
    real = model.losses

    def spy(step):
        seen["features"] = (step.head.cls_feats, step.head.reg_feats)
        return real(step)

    model.losses = spy
    with EventStorage(0):
        model(_batch())
    cls_feats, reg_feats = seen["features"]
    assert len(cls_feats) == 3 and cls_feats[0].shape[1] == model.head.feat_channels
    assert reg_feats[2].shape == cls_feats[2].shape


def test_gather_locations_matches_flattened_order():
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn(2, 4, 3, 5, generator=g), torch.randn(2, 4, 2, 2, generator=g),
             torch.randn(2, 4, 1, 1, generator=g)]
    flat = torch.cat([f.flatten(2).permute(0, 2, 1) for f in feats], dim=1)  # (N, A, D), decode's order
    mask = torch.rand(2, flat.shape[1], generator=g) > 0.5
    mask[0, 15] = mask[1, 19] = mask[1, 0] = True  # first location of levels 1, 2 and 0
    assert torch.equal(gather_locations(feats, mask), flat[mask])
    assert gather_locations(feats, torch.zeros_like(mask)).shape == (0, 4)


# ------------------------------------------------------------------- ST
def test_st_class_targets_are_hand_values():
    model = build_yolox(use_l1=True, class_target=ScaleAlignedTarget(beta=0.73, theta=6.0))
    preds, gts, assign, feats = _setup()
    c = _st_hand()
    # hand values: rho 1.5 -> v = exp(-6 (sqrt(1.5) - 1)^2); rho 0.81 -> v = exp(-6 * 0.01)
    assert c[1] == pytest.approx(0.81 ** 0.73 * math.exp(-0.06) ** 0.27)
    seen = {}
    real = model.better_sampling.class_target

    def spy(pred, gt):
        seen.update(pred=pred, gt=gt)
        return real(pred, gt)

    model.better_sampling.class_target = spy
    losses = losses_of(model, preds, gts, assign)
    # cxcywh in input pixels: (10, 8, 16, 12) -> (12, 8, 16, 8); (5.5, 5.5, 9, 9) -> (5, 5, 10, 10)
    assert seen["pred"].tolist() == [[10.0, 8.0, 16.0, 12.0], [5.5, 5.5, 9.0, 9.0]]
    assert seen["gt"].tolist() == [[12.0, 8.0, 16.0, 8.0], [5.0, 5.0, 10.0, 10.0]]
    lg = preds.cls_logits.tolist()
    exp_cls = (bce_logit(lg[0][0][0], 0.0) + bce_logit(lg[0][0][1], c[0])
               + bce_logit(lg[0][2][0], c[1]) + bce_logit(lg[0][2][1], 0.0)) / 2
    assert losses["loss_cls"].item() == pytest.approx(exp_cls, rel=1e-5)
    # only the class targets change
    plain = _plain_reference(preds, gts, assign)
    for k in ("loss_iou", "loss_obj", "loss_l1"):
        assert torch.equal(losses[k], plain[k]), k
    # beta = 1 is the IoU of the pair (no scale term)
    model.better_sampling.class_target = ScaleAlignedTarget(beta=1.0)
    ref = _plain_reference(preds, gts, assign, targets=torch.tensor(U))
    assert losses_of(model, preds, gts, assign)["loss_cls"].item() == pytest.approx(ref["loss_cls"].item(), rel=1e-6)


def test_st_target_is_detached_and_no_fg_is_fine():
    model = build_yolox(class_target=ScaleAlignedTarget())
    preds, gts, assign, _ = _setup()
    preds.boxes.requires_grad_(True)
    preds.cls_logits.requires_grad_(True)
    losses = losses_of(model, preds, gts, assign)
    grad, = torch.autograd.grad(losses["loss_cls"], preds.boxes, allow_unused=True)
    assert grad is None or not grad.any()
    empty = losses_of(model, preds, [gts[1], gts[1]], [assign[1], assign[1]])
    assert empty["loss_cls"].item() == 0.0 and empty["loss_iou"].item() == 0.0


# ------------------------------------------------------------------- SR
def _hand_generator(order="bn_relu"):
    """A SampleReweighting of width D with hand-set weights (BN affine default: 1, 0)."""
    sr = SampleReweighting(hidden_dim=D, order=order)
    with torch.no_grad():
        sr.conv1.weight.copy_(torch.tensor([[0.5, -0.25, 0.1, 0.3, -0.2, 0.4],
                                            [-0.3, 0.2, 0.6, -0.1, 0.5, 0.1],
                                            [0.2, 0.4, -0.5, 0.2, 0.1, -0.3]]))
        sr.conv1.bias.copy_(torch.tensor([0.1, -0.2, 0.05]))
        sr.conv2.weight.copy_(torch.tensor([[0.7, -0.4, 0.2], [0.1, 0.3, -0.6], [-0.5, 0.2, 0.4]]))
        sr.conv2.bias.copy_(torch.tensor([0.0, 0.1, -0.1]))
        sr.conv3.weight.copy_(torch.tensor([[0.9, -0.7, 0.5]]))
        sr.conv3.bias.copy_(torch.tensor([0.2]))
        sr.norm_reg.weight.fill_(1.5)
        sr.norm_reg.bias.fill_(0.3)
    return sr


def _bn_train(x, gamma=1.0, beta=0.0, eps=1e-5):
    """BatchNorm over the rows of x with batch statistics (biased variance), written out."""
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def _hand_weights(sr, h_cls, h_reg, t, s):
    """r_cls, r_reg of the generator, recomputed from its weights (bn_relu order)."""
    W1, b1 = sr.conv1.weight.detach(), sr.conv1.bias.detach()
    W2, b2 = sr.conv2.weight.detach(), sr.conv2.bias.detach()
    W3, b3 = sr.conv3.weight.detach(), sr.conv3.bias.detach()
    a = torch.sigmoid(torch.relu(_bn_train(torch.cat([h_reg, h_cls], 1) @ W1.T + b1)))
    gate = a @ W2.T + b2
    w_cls = torch.sigmoid(torch.relu(_bn_train(h_cls * gate @ W3.T + b3)))[:, 0]
    w_reg = torch.sigmoid(torch.relu(_bn_train(h_reg * gate @ W3.T + b3, 1.5, 0.3)))[:, 0]
    e = 1.0 - (t - s).abs()
    return w_cls ** e, w_reg ** e


@pytest.mark.parametrize("st", [False, True])
def test_sr_weighted_losses_equal_an_independent_recomputation(st):
    sr = _hand_generator()
    model = build_yolox(use_l1=True)
    set_parts(model, ScaleAlignedTarget() if st else None, sr)  # the hand-built features are D wide
    preds, gts, assign, feats = _setup()
    with pytest.raises(ValueError, match="features"):
        losses_of(model, preds, gts, assign)
    with EventStorage(0) as storage:
        losses = losses_of(model, preds, gts, assign, features=feats)
        stats = storage.latest()
    # the positives' features: image 0, locations 0 and 2 of the 1 x 3 level
    h_cls = feats[0][0][0, :, 0, POS_LOC].T
    h_reg = feats[1][0][0, :, 0, POS_LOC].T
    t = torch.tensor(_st_hand() if st else [0.5, 0.25])
    s = torch.tensor([sigmoid(preds.cls_logits[0, loc, c].item()) for loc, c in zip(POS_LOC, POS_CLS)])
    r_cls, r_reg = _hand_weights(sr, h_cls, h_reg, t, s)
    assert (r_cls > 0).all() and (r_cls < 1).all() and not torch.allclose(r_cls, r_reg)
    # losses written out: each positive's cls BCE (both channels) times r_cls, IoU and L1 times r_reg
    lg, rg = preds.cls_logits.tolist(), preds.reg.tolist()
    bce = [sum(bce_logit(lg[0][loc][k], t[i].item() if k == POS_CLS[i] else 0.0) for k in range(2))
           for i, loc in enumerate(POS_LOC)]
    exp_cls = sum(r_cls[i].item() * bce[i] for i in range(2)) / 2
    iou_l = [1 - u ** 2 for u in U]
    exp_iou = 5.0 * sum(r_reg[i].item() * iou_l[i] for i in range(2)) / 2
    l1_t = [[12 / 8 - 0, 8 / 8 - 0, math.log(16 / 8 + 1e-8), math.log(8 / 8 + 1e-8)],
            [5 / 8 - 2, 5 / 8 - 0, math.log(10 / 8 + 1e-8), math.log(10 / 8 + 1e-8)]]
    exp_l1 = sum(r_reg[i].item() * sum(abs(rg[0][loc][k] - l1_t[i][k]) for k in range(4))
                 for i, loc in enumerate(POS_LOC)) / 2
    assert losses["loss_cls"].item() == pytest.approx(exp_cls, rel=1e-5)
    assert losses["loss_iou"].item() == pytest.approx(exp_iou, rel=1e-5)
    assert losses["loss_l1"].item() == pytest.approx(exp_l1, rel=1e-5)
    plain = _plain_reference(preds, gts, assign)
    assert torch.equal(losses["loss_obj"], plain["loss_obj"])  # objectness is not reweighted
    # the statistics of the weights
    assert stats["better_sampling/r_cls_mean"][0] == pytest.approx(r_cls.mean().item(), rel=1e-5)
    assert stats["better_sampling/r_reg_std"][0] == pytest.approx(r_reg.std().item(), rel=1e-4)
    # the generator learns through the weighted losses (the paper literally); it reads
    # detached features
    feats[0][0].requires_grad_(True)
    losses = losses_of(model, preds, gts, assign, features=feats)
    sum(losses.values()).backward()
    assert sr.conv1.weight.grad is not None and sr.conv1.weight.grad.abs().sum() > 0
    assert feats[0][0].grad is None


def test_sr_with_unit_weights_is_plain_and_no_positive_keeps_the_generator_in_the_graph():
    class Ones(SampleReweighting):
        def forward(self, h_cls, h_reg, t, s):
            one = torch.ones(h_cls.shape[0])
            return one, one

    model = build_yolox(use_l1=True)
    set_parts(model, reweighting=Ones(hidden_dim=D))
    preds, gts, assign, feats = _setup()
    losses = losses_of(model, preds, gts, assign, features=feats)
    for k, v in _plain_reference(preds, gts, assign).items():
        assert losses[k].item() == pytest.approx(v.item(), rel=1e-6), k
    # no positive at all: the weights are empty, the generator still gets a (zero) gradient
    set_parts(model, reweighting=_hand_generator())
    empty = losses_of(model, preds, [gts[1], gts[1]], [assign[1], assign[1]], features=feats)
    assert empty["loss_cls"].item() == 0.0 and empty["loss_iou"].item() == 0.0
    sum(empty.values()).backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.better_sampling.reweighting.parameters())


def test_sr_width_must_match_the_head_and_spr_is_refused():
    with pytest.raises(UserError, match=r"^model\.better_sampling\.reweighting\.hidden_dim \(7\) must equal "
                                        r"model\.head\.feat_channels \(32\)$"):
        build_yolox(reweighting=SampleReweighting(hidden_dim=7))  # the head is 32 wide
    assert build_yolox(reweighting=SampleReweighting(hidden_dim=32)).better_sampling.reweighting.hidden_dim == 32
    with pytest.raises(UserError, match=r"^model\.better_sampling\.point_refinement: .*dense YOLOX head"):
        _build_yolox(num_classes=2, arch=BetterSamplingYOLOX,
                     better_sampling=BetterSampling(point_refinement=SamplePointRefinement()))


# ---------------------------------------------------------------- config
def _batch(sizes=((96, 128), (64, 64)), num_gt=(3, 0), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for (h, w), n in zip(sizes, num_gt):
        xy = torch.rand(n, 2, generator=g) * 40
        inst = Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 14], 1)),
                         gt_classes=torch.randint(0, 3, (n,), generator=g))
        out.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                    "height": h, "width": w, "instances": inst})
    return out


def _config():
    cfg = get_config(CONFIG)
    cfg.model.backbone.square_pad = 0  # small random inputs
    return cfg


def test_config_parts_switch_by_override_and_resolve(tmp_path):
    cfg = _config()
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))  # every interpolation resolves
    assert cfg.model._target_ is BetterSamplingYOLOX and cfg.model.iou_loss_type == "ciou"
    assert cfg.model.backbone.in_features == ["dark2", "dark3", "dark4", "dark5"]
    bs = cfg.model.better_sampling
    assert bs.class_target.beta == 0.73 and bs.class_target.theta == 6.0  # Tables 4-5
    assert bs.reweighting.detach_normalize is False  # the paper literally
    # one part off by one override each; the generator's width follows the head's
    cfg.model.better_sampling.class_target = None
    cfg.model.head.feat_channels = 48
    model = instantiate(cfg.model)
    assert model.better_sampling.class_target is None and model.better_sampling.reweighting.hidden_dim == 48
    cfg.model.better_sampling.reweighting = None
    cfg.model.better_sampling.class_target = {"_target_": ScaleAlignedTarget, "beta": 0.5}
    model = instantiate(cfg.model)
    assert model.better_sampling.reweighting is None and model.better_sampling.class_target.beta == 0.5


def test_config_trains_two_iterations_with_empty_and_non_empty_gt():
    cfg = _config()
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    sr = model.better_sampling.reweighting
    assert isinstance(sr, SampleReweighting) and sr.hidden_dim == 96
    cfg.optimizer.params.model = model
    cfg.optimizer.lr = 1e-3
    opt = instantiate(cfg.optimizer)
    before = sr.conv1.weight.detach().clone()
    model.train()
    with EventStorage(0) as storage:
        for it, num_gt in enumerate([(3, 0), (0, 0)]):
            storage.iter = it
            losses = model(_batch(num_gt=num_gt, seed=it))
            assert set(losses) == {"loss_iou", "loss_obj", "loss_cls", "loss_l1"}
            assert all(torch.isfinite(v) for v in losses.values())
            opt.zero_grad()
            sum(losses.values()).backward()
            assert all(p.grad is not None for p in sr.parameters())
            if it == 0:
                assert "better_sampling/r_cls_mean" in storage.latest()
                assert 0 < storage.latest()["better_sampling/r_cls_mean"][0] < 1
                assert sr.conv1.weight.grad.abs().sum() > 0
            else:
                assert losses["loss_cls"].item() == 0.0 and losses["loss_iou"].item() == 0.0
            opt.step()
    assert not torch.equal(before, sr.conv1.weight)
    model.eval()
    model.test_score_thresh = 0.0
    with torch.no_grad():
        out = model([{k: v for k, v in b.items() if k != "instances"} for b in _batch()])
    assert len(out) == 2 and len(out[0]["instances"]) > 0 and out[1]["instances"].image_size == (64, 64)


def test_inference_is_unchanged_by_st_and_sr():
    cfg = _config()
    torch.manual_seed(0)
    bs = instantiate(cfg.model)
    cfg.model.better_sampling = None  # the one off override
    plain = instantiate(cfg.model)
    assert plain.better_sampling is None
    sd = bs.state_dict()
    extra = {k for k in sd if k.startswith("better_sampling.reweighting.")}
    assert extra and set(sd) - extra == set(plain.state_dict())
    plain.load_state_dict({k: v for k, v in sd.items() if k not in extra})
    # a training forward updates the BatchNorm statistics, the generator's too: those of the
    # detector are copied, the generator's must not matter at test time
    bs.train()
    with EventStorage(0):
        sum(bs(_batch()).values()).backward()
    plain.load_state_dict({k: v for k, v in bs.state_dict().items() if k not in extra})
    bs.eval()
    plain.eval()
    bs.test_score_thresh = plain.test_score_thresh = 0.0
    batch = [{k: v for k, v in b.items() if k != "instances"} for b in _batch(seed=3)]
    with torch.no_grad():
        a, b = bs(batch), plain(batch)
    for x, y in zip(a, b):
        assert len(x["instances"]) > 0
        assert torch.equal(x["instances"].scores, y["instances"].scores)
        assert torch.equal(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor)
        assert torch.equal(x["instances"].pred_classes, y["instances"].pred_classes)
