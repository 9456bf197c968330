"""Every hyper-parameter the CFINet paper states (Yuan et al., "Small Object Detection via
Coarse-to-fine Proposal Generation and Imitation Learning", ICCV 2023), pinned as the user
gets it: from the built model of the paper's SODA-D config
(``configs/cfinet/cfinet_R50_fpn_sodad_1x.py``) and from the components' defaults. Each
assertion names the paper's equation, table or section; [code] marks the official
implementation's values that sod2 takes where the paper gives none, [ours] sod2's documented
choices (projects/CFINet/README.md).

Also the feature imitation's gradient path: the student side (each ground truth's own RoI
feature) carries L_con into the FPN and the backbone, while bank exemplars and augmented views
pass through the current Feat2Embed convs WITHOUT gradient and through the MLP WITH it.
"""
import math

import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from sod2.config import get_config
from sod2.modeling.methods.cfinet import DynamicIoUAssigner
from sod2.modeling.methods.cfinet.feature_imitation import ContrastiveRows, SampleTable

from .paper_helpers import config_difference, training_batch

PAPER = "cfinet/cfinet_R50_fpn_sodad_1x.py"


@pytest.fixture(scope="module")
def paper_cfg():
    return get_config(PAPER)


@pytest.fixture(scope="module")
def paper_model(paper_cfg):
    torch.manual_seed(0)  # module-scoped: set up before the autouse seeding
    return instantiate(paper_cfg.model)


# ------------------------------------------------------------------------ detector skeleton
def test_skeleton_fpn_p2_p5_256_and_roi_head(paper_cfg, paper_model):
    """Sec. 4 / implementation: Faster R-CNN R50-FPN (ImageNet init, stage 1 frozen), 256
    channels, levels P2-P5 only (no P6); RoIAlign 7x7 (sampling ratio 0, aligned) on P2-P5, 2
    shared FC 1024, box deltas stds (0.1, 0.1, 0.2, 0.2) (Detectron2 weights = 1 / std); 256
    RoIs per image, positive fraction 0.5, IoU 0.5; ground truths added as proposals."""
    bu = paper_cfg.model.backbone.bottom_up
    assert bu.stages.depth == 50 and bu.freeze_at == 2, "ResNet-50, stem and stage 1 frozen"
    assert paper_cfg.train.init_checkpoint.endswith("ImageNetPretrained/MSRA/R-50.pkl"), "ImageNet init"
    shapes = paper_model.backbone.output_shape()
    assert sorted(shapes) == ["p2", "p3", "p4", "p5"]
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "p2": (256, 4), "p3": (256, 8), "p4": (256, 16), "p5": (256, 32)}
    rh = paper_model.roi_heads
    assert rh.box_in_features == ["p2", "p3", "p4", "p5"]
    pooler = rh.box_pooler
    assert pooler.output_size == (7, 7)
    assert all(lv.sampling_ratio == 0 and lv.aligned for lv in pooler.level_poolers)
    assert [fc.out_features for fc in rh.box_head.fcs] == [1024, 1024]
    assert tuple(rh.box_predictor.box2box_transform.weights) == (10.0, 10.0, 5.0, 5.0), "stds 0.1, 0.1, 0.2, 0.2"
    assert (rh.batch_size_per_image, rh.positive_fraction) == (256, 0.5)
    assert rh.proposal_matcher.thresholds[1:-1] == [0.5] and rh.proposal_append_gt


def test_sodad_test_settings_score_005_nms_05_100_per_patch(paper_model):
    """SODA-D test: score 0.05, NMS 0.5, 100 detections per patch."""
    p = paper_model.roi_heads.box_predictor
    assert (p.test_score_thresh, p.test_nms_thresh, p.test_topk_per_image) == (0.05, 0.5, 100)


# ------------------------------------------------------------------------------- CRPN
def test_crpn_anchors_one_square_of_side_2_stride(paper_model):
    """CRPN: one square anchor per location on P2-P5, side 2 x stride (8, 16, 32, 64)."""
    crpn = paper_model.proposal_generator
    assert crpn.in_features == ["p2", "p3", "p4", "p5"]
    ag = crpn.anchor_generator
    assert list(ag.strides) == [4, 8, 16, 32] and list(ag.num_anchors) == [1, 1, 1, 1]
    sides = [tuple((a[0, 2:] - a[0, :2]).tolist()) for a in ag.cell_anchors]
    assert sides == [(8.0, 8.0), (16.0, 16.0), (32.0, 32.0), (64.0, 64.0)]


def test_crpn_stage1_dilated_conv_stds_and_weight(paper_model):
    """Stage 1: 3x3 conv with dilation 3 (bias); deltas stds (0.1, 0.1, 0.5, 0.5); IoU loss
    weight alpha1 = 9.0 (10 x 0.9). Stage 2: adaptive (deformable) conv; stds (0.05, 0.05,
    0.1, 0.1); objectness weight alpha2 = 0.9, IoU loss weight 9.0 (L_CRPN)."""
    crpn = paper_model.proposal_generator
    conv = crpn.head.s1_conv
    assert conv.dilation == (3, 3) and conv.padding == (3, 3) and conv.bias is not None
    assert crpn.head.adaptive
    assert tuple(crpn.stage1_box2box.weights) == (10.0, 10.0, 2.0, 2.0), "stage-1 stds 0.1, 0.1, 0.5, 0.5"
    assert tuple(crpn.stage2_box2box.weights) == (20.0, 20.0, 10.0, 10.0), "stage-2 stds 0.05, 0.05, 0.1, 0.1"
    assert (crpn.stage1_normalizer, crpn.stage1_anchor_normalizer) == ("anchors", 200.0), \
        "[code] stage 1: no sampling, loss normaliser = anchors / 200"
    assert crpn.loss_weight == {"loss_crpn_reg_s1": 9.0, "loss_crpn_cls": 0.9, "loss_crpn_reg_s2": 9.0}, \
        "L_CRPN = alpha1 (L_reg^coarse + L_reg^fine) + alpha2 L_cls, alpha1 9.0, alpha2 0.9"


def test_eq1_dynamic_threshold_of_the_built_assigner(paper_model):
    """Eq. 1: T_a = max(0.25, 0.20 + gamma log2(sqrt(wh) / 12)), gamma 0.15 (log base 2 [code]);
    negatives IoU < 0.15 [code]."""
    a = paper_model.proposal_generator.stage1_assigner
    assert isinstance(a, DynamicIoUAssigner)
    assert (a.base_size, a.gamma, a.rule, a.neg_thresh) == (12.0, 0.15, "paper", 0.15)
    sizes = [6.0, 12.0, 24.0, 48.0, 96.0]
    hand = [max(0.25, 0.20 + 0.15 * math.log2(s / 12)) for s in sizes]  # 0.25 0.25 0.35 0.50 0.65
    for s, t in zip(sizes, hand):
        # one anchor just above and one just below the threshold of a ground truth of size s
        iou = torch.tensor([[t + 1e-4, t - 1e-4]])
        _, labels = a(iou, torch.tensor([s]))
        assert labels.tolist() == [1, -1 if t - 1e-4 >= 0.15 else 0], f"Eq. 1 threshold {t:.3f} at size {s}"


def test_crpn_stage2_assignment_and_proposals(paper_model):
    """Stage 2: IoU >= 0.7 positive, < 0.7 negative, a ground truth's best box if >= 0.3; 256
    per image, positive fraction 0.5. Proposals: train nms_pre 2000, NMS 0.8, 300; test 1000,
    0.5, 300."""
    crpn = paper_model.proposal_generator
    m = crpn.stage2_matcher
    assert m.min_pos_iou == 0.3
    iou = torch.tensor([[0.75, 0.69, 0.0, 0.0],    # a positive at >= 0.7, a negative at 0.69
                        [0.0, 0.0, 0.35, 0.0],     # best box at 0.35 >= 0.3: positive
                        [0.0, 0.0, 0.0, 0.29]])    # best box at 0.29 < 0.3: stays negative
    matches, labels = m(iou)
    assert labels.tolist() == [1, 0, 1, 0] and matches[:3].tolist() == [0, 0, 1]
    assert (crpn.batch_size_per_image, crpn.positive_fraction) == (256, 0.5)
    assert crpn.pre_nms_topk == {True: 2000, False: 1000}
    assert crpn.nms_thresh == {True: 0.8, False: 0.5}
    assert crpn.post_nms_topk == {True: 300, False: 300}


# ------------------------------------------------------------------- feature imitation
def test_feat2embed_and_bank_sizes(paper_model):
    """Feat2Embed: 7x7x256 -> three 3x3 convs without padding (7 -> 5 -> 3 -> 1), 256 channels,
    GroupNorm(32), no bias [code] -> MLP 256 -> 512 -> 512 -> 128, L2-normalised. Exemplar bank:
    per class, capacity 256 [code], of 256 x 7 x 7 RoI features."""
    im = paper_model.roi_heads.imitation
    convs = [m for m in im.embed.convs if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in im.embed.convs if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == 3 and all(c.kernel_size == (3, 3) and c.padding == (0, 0) and c.bias is None for c in convs)
    assert all((c.in_channels, c.out_channels) == (256, 256) for c in convs)
    assert len(norms) == 3 and all(n.num_groups == 32 for n in norms)
    lin = [m for m in im.embed.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in lin] == [(256, 512), (512, 512), (512, 128)]
    assert im.embed.project(torch.randn(3, 256)).norm(dim=1).tolist() == pytest.approx([1.0] * 3)
    # [ours] PyTorch's init and no last bias (the official N(0, 0.01) + bias collapses the
    # embeddings on the synthetic data; ``mlp_init="official"`` is the option)
    assert lin[-1].bias is None
    assert im.bank.capacity == 256 and tuple(im.bank.bank_feats.shape) == (9, 256, 256, 7, 7)


def test_imitation_thresholds_counts_and_augmentations(paper_model):
    """T_hq = 0.65 (Sec. 3.3 / ablation: 0.5/0.55/0.65/0.7 -> 30.3/30.6/30.7/30.5) with at least
    8 predictions [code]; 128 samples per ground truth, up to 64 bank positives [code]; views
    shifted by +-0.3 / +-0.5 and scaled 0.97 / 1.03 (10 views) [code]."""
    im = paper_model.roi_heads.imitation
    assert im.hq_thresh == 0.65 and im.min_predictions == 8
    assert im.num_samples == 128 and im.max_bank_positives == 64 and not im.tiered_positives
    assert im.shifts == (0.3, 0.5) and im.scales == (0.97, 1.03) and im.num_views == 10
    assert (im.quality_rule, im.quality_proposals, im.negatives) == ("paper", "all", "paper")
    assert im.tier_weights is None  # [code] tiers are an option
    assert paper_model.roi_heads.reweight_features is False  # [code] reweighting is an option


def _hand_supcon(anchor, samples, positive, tau):
    logits = [float(anchor @ s) / tau for s in samples]
    m = max(logits)
    lse = m + math.log(sum(math.exp(v - m) for v in logits))
    pos = [lg - lse for lg, p in zip(logits, positive) if p]
    return -sum(pos) / len(pos)


def _table(imitation, gen, zero_student=False):
    """A 4-entry table [ground truth | background RoI | bank exemplar | augmented view]."""
    feats = torch.randn(4, 256, 7, 7, generator=gen, dtype=torch.float64)
    if zero_student:
        feats[:2] = 0.0
    else:  # positives close to the anchor: dot products far from 0, so tau matters
        feats[2:] = feats[0] + 0.2 * feats[2:]
    table = SampleTable(feats=feats, kind=torch.tensor([0, 1, 2, 3]), label=torch.tensor([0, 9, 0, 0]),
                        owner=torch.tensor([0, -1, -1, 0]), image=torch.tensor([0, 0, -1, 0]), with_grad=2)
    rows = ContrastiveRows(anchor=torch.tensor([0]), samples=torch.tensor([[2, 3, 1]]),
                           positive=torch.tensor([[True, True, False]]), valid=torch.ones(1, 3, dtype=torch.bool),
                           weights=torch.ones(1, dtype=torch.float64))
    return table, rows


def test_eq5_tau_06_and_alpha3_05(paper_model, paper_cfg):
    """Eq. 5 (supervised contrastive loss) with tau = 0.6 (ablation 0.1/0.5/0.6/0.8 ->
    30.3/30.4/30.7/30.2) and weight alpha3 = 0.5 (0.25/0.5/0.75 -> 30.6/30.7/30.4): the built
    branch's loss on a hand table against Eq. 5 computed by hand."""
    im = paper_model.roi_heads.imitation
    assert im.temperature == 0.6 and im.loss_weight == 0.5
    embed = im.embed.double()
    try:
        table, rows = _table(im, torch.Generator().manual_seed(0))
        got = im.loss(table, rows).item()
        with torch.no_grad():
            v = embed.project(embed.compress(table.feats))
        expect = _hand_supcon(v[0], [v[2], v[3], v[1]], [True, True, False], 0.6)
        assert got == pytest.approx(expect, rel=1e-9), "Eq. 5 with tau = 0.6"
        assert got != pytest.approx(_hand_supcon(v[0], [v[2], v[3], v[1]], [True, True, False], 0.5), rel=1e-6)
    finally:
        embed.float()


def test_mlp_learning_rate_factor_005(paper_cfg):
    """[code] Feat2Embed's MLP trains at 0.05 x the learning rate; everything else at 1 x."""
    f = paper_cfg.optimizer.params.lr_factor_func
    assert f("roi_heads.imitation.embed.mlp.0.weight") == 0.05
    assert f("roi_heads.imitation.embed.convs.0.weight") == 1.0 and f("backbone.bottom_up.stem.conv1.weight") == 1.0


# ------------------------------------------------------------------------- SODA-D recipe
def test_sodad_recipe_sgd_001_batch4_12_epochs_steps_8_11_warmup_500(paper_cfg):
    """SODA-D: SGD lr 0.01, momentum 0.9, weight decay 1e-4, batch 4, 12 epochs with steps at 8
    and 11, linear warm-up of 500 iterations from 0.001."""
    cfg = paper_cfg
    o = cfg.optimizer
    assert (o.lr, o.momentum, o.weight_decay) == (0.01, 0.9, 1e-4)
    assert cfg.dataloader.train.total_batch_size == 4
    sched, n = instantiate(cfg.lr_multiplier), cfg.train.max_iter
    at = lambda it: sched(it / n)  # noqa: E731
    assert at(0) == pytest.approx(0.001) and at(250) == pytest.approx(0.001 + 0.999 * 0.5, rel=1e-6)
    assert at(500) == pytest.approx(1.0)
    step8, step11 = n * 8 // 12, n * 11 // 12
    assert at(step8 - 1) == pytest.approx(1.0) and at(step8) == pytest.approx(0.1), "x0.1 at epoch 8 of 12"
    assert at(step11 - 1) == pytest.approx(0.1) and at(step11) == pytest.approx(0.01), "x0.1 at epoch 11 of 12"


def test_sodad_patches_resized_x15_to_1200_and_flip(paper_cfg):
    """SODA-D: 800 x 800 patches resized x1.5 to 1200 x 1200 for training and test; flip 0.5."""
    for split in ("train", "test"):
        resize = paper_cfg.dataloader[split].mapper.augmentations[0]
        t = instantiate(resize).get_transform(np.zeros((800, 800, 3), dtype=np.uint8))
        assert (t.new_h, t.new_w) == (1200, 1200)
    flip = instantiate(paper_cfg.dataloader.train.mapper.augmentations[1])
    assert flip.horizontal and flip.prob == 0.5


# ---------------------------------------------------------------------- gradient paths
def test_bank_and_views_pass_the_convs_without_gradient_and_the_mlp_with_it(paper_model):
    """Sec. 3.3 / [code]: exemplar embeddings use the CURRENT Feat2Embed convs without gradient,
    the MLP runs with gradient; augmented views' convs run without gradient too. With the
    student rows (ground truth, RoI) set to zero, the convs' weights can only get gradient from
    the bank / view rows: it must be exactly zero, while the first MLP layer's (which sees the
    bank / view rows only) must not."""
    im = paper_model.roi_heads.imitation
    im.zero_grad(set_to_none=True)
    im.embed.double()
    try:
        table, rows = _table(im, torch.Generator().manual_seed(1), zero_student=True)
        im.loss(table, rows).backward()
        convs = [m for m in im.embed.convs if isinstance(m, torch.nn.Conv2d)]
        assert all(c.weight.grad is None or c.weight.grad.abs().sum() == 0 for c in convs), \
            "bank exemplars and views must pass the Feat2Embed convs without gradient"
        assert im.embed.mlp[0].weight.grad.abs().sum() > 0, "bank exemplars and views pass the MLP with gradient"
    finally:
        im.embed.float()
        im.zero_grad(set_to_none=True)


def test_l_con_alone_reaches_the_fpn_and_backbone_through_the_student_side():
    """The anchor of each contrastive row is the ground truth's own RoI feature WITH gradient
    (the student side): L_con alone sends a gradient into the anchors' RoI features and, through
    them, into the FPN and the backbone (the background RoIs, negatives, keep theirs too; the
    anchors' share is measured on its own). The bank's exemplars are buffers: no gradient."""
    cfg = get_config("cfinet/cfinet_R18s_fpn_synthetic.py")
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    imitation, seen = model.roi_heads.imitation, {}
    # a filled bank: every (untrained, low-quality) ground truth imitates exemplars of its class
    bank = imitation.bank
    shape = bank.bank_feats.shape
    bank.add(torch.randn(4 * shape[0], *shape[2:]), torch.arange(shape[0]).repeat_interleave(4))
    real = imitation.anchor_features

    def spy(*args):
        out = real(*args)
        if out.requires_grad:
            out.retain_grad()
        seen["anchors"] = out
        return out

    imitation.anchor_features = spy
    with EventStorage(0):
        losses = model(training_batch(2, (96, 96), 3, 3, min_side=10.0, extra=20.0))
    assert losses["loss_con"].item() > 0
    losses["loss_con"].backward(retain_graph=True)
    anchors = seen["anchors"]
    assert anchors.requires_grad and anchors.grad is not None and anchors.grad.abs().sum() > 0, \
        "the anchors (ground-truth RoI features) must get L_con's gradient"
    fpn = model.backbone
    params = [p for p in fpn.parameters() if p.requires_grad]
    through_anchors = torch.autograd.grad(anchors, params, grad_outputs=anchors.grad, allow_unused=True)
    named = dict(zip([n for n, p in fpn.named_parameters() if p.requires_grad], through_anchors))

    def total(prefix):
        return sum(float(g.abs().sum()) for n, g in named.items() if g is not None and n.startswith(prefix))
    assert total("bottom_up.") > 0, "L_con must reach the backbone through the anchors"
    assert total("fpn_lateral") + total("fpn_output") > 0, "... and the FPN"
    convs = [m for m in imitation.embed.convs if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
    assert not bank.bank_feats.requires_grad
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.roi_heads.box_predictor.parameters()), \
        "L_con does not train the detection layers"


def test_plain_twin_differs_only_in_cfinet():
    """The Faster R-CNN row of the SODA-D table: the paper's config is its plain twin plus CFINet's
    keys only: the subclass, the ROI heads' class, the ``cfinet`` node (CRPN and imitation) and
    the MLP's learning-rate factor (``imitation_mlp_lr``)."""
    diff = config_difference(PAPER, "cfinet/cfinet_plain_R50_fpn_sodad_1x.py")
    assert diff == ["model._target_", "model.cfinet", "model.roi_heads._target_", "optimizer.params.base_lr",
                    "optimizer.params.lr_factor_func"]
