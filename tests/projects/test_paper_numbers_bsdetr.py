"""Every hyper-parameter the Better Sampling paper states (Huang et al., "Better Sampling,
towards Better End-to-end Small Object Detection"), pinned as the user gets it: from the built
model of the paper's config (``configs/bsdetr/bsdetr_r50vd_visdrone.py``), from the
``better_sampling`` config node (configs/common/models/bsdetr.py), and from the components' own
defaults.
Each assertion names the paper's table or section; [RT-DETR] marks the baseline's values the
paper builds on, [ours] sod2's documented choices where the paper is silent
(projects/BetterSampling/README.md).

Where a value can be read back through behaviour (the VFL negative weight, the ST target, the
SPR margin), the test computes the built component's output on a hand case and compares it
with the paper's formula evaluated by hand, so that a constant changed anywhere on the way
(helper default, config, component default) fails here.

Also: SR's gradient path (the paper literally: the weights r keep their gradient into the
weight generator; the option ``detach_normalize`` cuts it)."""
import math

import pytest
import torch
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage
from omegaconf import OmegaConf

from sod2.config import get_config
from sod2.engine.lazy_train import apply_checked_overrides
from sod2.modeling.criterion import OutputSet, SetCriterion
from sod2.modeling.methods.better_sampling import (BetterSampling, SamplePointRefinement, SampleReweighting,
                                                   ScaleAlignedTarget)
from sod2.modeling.transformer import EncoderOutput

from ..modules import config_module
from .paper_helpers import config_difference, training_batch

PAPER = "bsdetr/bsdetr_r50vd_visdrone.py"
TABLE7_ETAS = (1.5, 1.3, 1.2, 1.1, 1.05, 1.0)


@pytest.fixture(scope="module")
def paper_cfg():
    return get_config(PAPER)


@pytest.fixture(scope="module")
def paper_model(paper_cfg):
    torch.manual_seed(0)  # module-scoped: set up before the autouse seeding
    return instantiate(paper_cfg.model)


def _fresh_rtdetr():
    """A fresh RT-DETR-R50vd model config (configs/common/models/rtdetr.py) and the module of
    configs/common/models/bsdetr.py (its ``better_sampling`` node)."""
    rt = config_module("common/models/rtdetr.py")
    cfg = OmegaConf.create({"model": rt.model})
    return cfg, config_module("common/models/bsdetr.py")


# ----------------------------------------------------------------- Table 6: VFL alpha, gamma
def _vfl_all_negatives(criterion, logits):
    """The criterion's loss_vfl on a set without any ground truth: every entry is a negative."""
    B, N, _ = logits.shape
    # an encoder-type set (no sampling points for SPR), named "" so that its loss is "loss_vfl"
    out = OutputSet("", EncoderOutput(logits=logits, boxes=torch.full((B, N, 4), 0.5),
                                      hidden=torch.zeros(B, N, 256), box_hidden=torch.zeros(B, N, 256)))
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]
    return criterion([out], targets)["loss_vfl"].item()


def _hand_vfl_negatives(logits, alpha, gamma):
    """sum over entries of alpha p^gamma BCE(p, 0), p = sigmoid(x) (the paper's negative term)."""
    total = 0.0
    for x in logits.flatten().tolist():
        p = 1 / (1 + math.exp(-x))
        total += alpha * p ** gamma * -math.log(1 - p)
    return total


def test_table6_vfl_alpha_gamma_in_the_paper_config(paper_model):
    crit = paper_model.criterion
    assert (crit.better_sampling.vfl_alpha, crit.better_sampling.vfl_gamma) == (0.5, 1.5), \
        "Better Sampling Table 6: VFL alpha 0.5, gamma 1.5"
    assert crit.vfl_alpha_gamma() == (0.5, 1.5)
    logits = torch.tensor([[[0.3, -1.2], [2.0, 0.1]]])
    got = _vfl_all_negatives(crit, logits)
    assert got == pytest.approx(_hand_vfl_negatives(logits, 0.5, 1.5), rel=1e-6), \
        "Better Sampling Table 6 / Eq. of L_cls: negatives weighted 0.5 p^1.5"
    assert got != pytest.approx(_hand_vfl_negatives(logits, 0.75, 2.0), rel=1e-3)


def test_table6_vfl_alpha_gamma_in_every_ablation_row():
    """The paper's 0.5 / 1.5 belong to the ``better_sampling`` node, not to a part, so the
    ablation rows of Table 3 (the "none" row included) differ only in ST/SR/SPR; the plain twin
    (RT-DETR itself) keeps RT-DETR's 0.75 / 2.0."""
    _, bs = _fresh_rtdetr()
    assert (bs.better_sampling.vfl_alpha, bs.better_sampling.vfl_gamma) == (0.5, 1.5), "Table 6: VFL 0.5 / 1.5"
    assert BetterSampling().vfl_alpha == 0.5 and BetterSampling().vfl_gamma == 1.5, "BetterSampling defaults: Table 6"
    for path in ["bsdetr/bsdetr_none_r50vd_visdrone.py", "bsdetr/bsdetr_st_sr_r50vd_visdrone.py",
                 "bsdetr/bsdetr_sr_r50vd_visdrone.py", "bsdetr/bsdetr_spr_r50vd_visdrone.py"]:
        node = get_config(path).model.criterion.better_sampling
        assert (node.vfl_alpha, node.vfl_gamma) == (0.5, 1.5), f"Table 3 ablation row {path}: the paper's VFL 0.5 / 1.5"
    plain = get_config("bsdetr/bsdetr_plain_r50vd_visdrone.py").model.criterion
    assert "better_sampling" not in plain and (plain.alpha, plain.gamma) == (0.75, 2.0)


def test_rtdetr_baseline_keeps_its_own_vfl_and_loss_weights():
    """[RT-DETR] VFL alpha 0.75, gamma 2.0 and weights VFL 1 / L1 5 / GIoU 2 (the paper's
    baseline; Better Sampling changes alpha/gamma, not the weights)."""
    cfg, _ = _fresh_rtdetr()
    crit = instantiate(get_config("rtdetr/rtdetr_r50vd_coco.py").model.criterion)
    assert (crit.alpha, crit.gamma) == (0.75, 2.0), "RT-DETR's VFL: alpha 0.75, gamma 2.0"
    assert (SetCriterion.__init__.__kwdefaults__["alpha"], SetCriterion.__init__.__kwdefaults__["gamma"]) == (0.75, 2.0)
    assert cfg.model.criterion.alpha == 0.75 and cfg.model.criterion.gamma == 2.0


def test_loss_weights_vfl1_l1_5_giou2_offset1_atten1(paper_model):
    """[RT-DETR] VFL 1, L1 5, GIoU 2; Better Sampling "L = L_cls + L_reg + L_offset + L_atten":
    the two SPR terms with weight 1."""
    w = paper_model.criterion.weight_dict
    assert w == {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_offset": 1.0, "loss_atten": 1.0}


# ------------------------------------------------------------ Tables 4-5: ST beta and theta
def _hand_st(pred, gt, beta, theta):
    """c = u^beta v^(1-beta), v = exp(-theta (sqrt(rho) - 1)^2), for (cx, cy, w, h) boxes."""
    def xyxy(b):
        return b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    a, g = xyxy(pred), xyxy(gt)
    inter = max(0.0, min(a[2], g[2]) - max(a[0], g[0])) * max(0.0, min(a[3], g[3]) - max(a[1], g[1]))
    u = inter / (pred[2] * pred[3] + gt[2] * gt[3] - inter)
    rho = pred[2] * pred[3] / (gt[2] * gt[3])
    v = math.exp(-theta * (math.sqrt(rho) - 1) ** 2)
    return u ** beta * v ** (1 - beta)


def _st_of(target):
    pred = [[0.5, 0.5, 0.2, 0.2], [0.42, 0.50, 0.15, 0.15]]  # area ratios 4 and 2.25
    gt = [[0.5, 0.5, 0.1, 0.1], [0.40, 0.52, 0.10, 0.10]]
    got = target(torch.tensor(pred, dtype=torch.float64), torch.tensor(gt, dtype=torch.float64)).tolist()
    return got, pred, gt


def test_tables_4_5_st_beta_073_theta_6_in_the_paper_config(paper_model):
    st = paper_model.criterion.better_sampling.class_target
    assert isinstance(st, ScaleAlignedTarget)
    assert (st.beta, st.theta) == (0.73, 6.0), "Better Sampling Table 4: beta 0.73; Table 5: theta 6"
    got, pred, gt = _st_of(st)
    for g, p, t in zip(got, pred, gt):
        assert g == pytest.approx(_hand_st(p, t, 0.73, 6.0), rel=1e-9), "ST target c with beta 0.73, theta 6"
        assert g != pytest.approx(_hand_st(p, t, 0.73, 3.0), rel=1e-3)


def test_tables_4_5_st_defaults_of_config_nodes_and_component():
    _, bs = _fresh_rtdetr()
    node = bs.better_sampling.class_target
    assert (node.beta, node.theta) == (0.73, 6.0), "better_sampling node: Table 4 beta 0.73, Table 5 theta 6"
    dense = config_module("common/models/dense_better_sampling.py").dense_better_sampling.class_target
    assert (dense.beta, dense.theta) == (0.73, 6.0), "dense_better_sampling (ST on YOLOX): Tables 4-5 beta 0.73, theta 6"
    st = ScaleAlignedTarget()
    assert (st.beta, st.theta) == (0.73, 6.0), "ScaleAlignedTarget defaults: Tables 4-5"


# ------------------------------------------------------------------ Table 7: eta per layer
def _spr_loss_at(spr, layer, d):
    """loss_offset of one outside point at box-relative distance d (> 0.5) on x only."""
    n = spr.num_points or 4
    offsets = torch.zeros(1, 1, 1, n, 2, dtype=torch.float64)
    offsets[0, 0, 0, 0, 0] = d * 2 * n  # RT-DETR: location = ref + offset / n * wh * 0.5
    attention = torch.full((1, 1, 1, n), 1.0 / n, dtype=torch.float64)
    return spr(offsets, attention, layer)[0].item()


def test_table7_eta_per_decoder_layer_in_the_paper_config(paper_model):
    spr = paper_model.criterion.better_sampling.point_refinement
    assert isinstance(spr, SamplePointRefinement)
    assert spr.etas == TABLE7_ETAS, "Better Sampling Table 7: eta per decoder layer 1.5/1.3/1.2/1.1/1.05/1.0"
    assert paper_model.decoder.num_layers == len(spr.etas) == 6
    # behaviour: a point at 0.6 box sizes from the centre costs (0.6 - eta / 2)^2 beyond the
    # eta-enlarged box ([ours] reading of L_offset)
    for layer, eta in enumerate(TABLE7_ETAS):
        assert _spr_loss_at(spr, layer, 0.6) == pytest.approx(max(0.0, 0.6 - eta / 2) ** 2, abs=1e-12), \
            f"Table 7: eta {eta} at decoder layer {layer + 1}"


def test_table7_etas_of_config_node_and_component_defaults():
    _, bs = _fresh_rtdetr()
    assert tuple(bs.better_sampling.point_refinement.etas) == TABLE7_ETAS, "better_sampling node: Table 7"
    assert bs.PAPER_ETAS == TABLE7_ETAS and bs.default_etas(6) == TABLE7_ETAS
    assert SamplePointRefinement().etas == TABLE7_ETAS, "SamplePointRefinement default: Table 7"
    # [ours] another decoder depth: the paper's values at the same relative depth
    assert bs.default_etas(3) == (1.5, 1.1, 1.0)
    r18 = get_config("bsdetr/bsdetr_r18vd_hituav.py").model
    assert r18.decoder.num_layers == 3 and tuple(r18.criterion.better_sampling.point_refinement.etas) == (1.5, 1.1, 1.0)


# ---------------------------------------------------------------- SR: the paper's B and r
def test_sr_generator_as_the_paper(paper_model):
    """SR: conv1 2C -> C, conv2 C -> C, conv3 C -> 1 (C = the decoder width 256 [RT-DETR]);
    B = BN then ReLU ([ours] order; the paper: "ReLU and batch normalization"); r keeps its
    gradient (the paper literally; ``detach_normalize`` is sod2's option)."""
    sr = paper_model.criterion.better_sampling.reweighting
    assert isinstance(sr, SampleReweighting)
    assert (sr.conv1.in_features, sr.conv1.out_features) == (512, 256)
    assert (sr.conv2.in_features, sr.conv2.out_features, sr.conv3.out_features) == (256, 256, 1)
    assert sr.order == "bn_relu" and sr.detach_normalize is False and sr.cls_weight == "replace"


# --------------------------------------------------------------- RT-DETR and the recipe
def test_rtdetr_architecture_numbers(paper_cfg, paper_model):
    """[RT-DETR] 300 queries, 6 decoder layers, deformable attention with 8 heads, 4 points,
    3 levels, at most 300 detections, 100 denoising queries, matching costs 2 / 5 / 2;
    ResNet-50-vd."""
    dec = paper_model.decoder
    assert dec.query_selection.num_queries == 300
    assert dec.num_layers == 6 and dec.num_levels == 3
    attn = dec.layers[0].cross_attn
    assert (attn.num_heads, attn.num_points, attn.num_levels) == (8, 4, 3)
    assert paper_model.num_top_queries == 300
    dn = paper_model.denoising  # contrastive denoising groups [RT-DETR]
    assert (dn.num_denoising, dn.label_noise_ratio, dn.box_noise_scale) == (100, 0.5, 1.0)
    m = paper_cfg.model.criterion.matcher  # Hungarian matching costs [RT-DETR]
    assert (m.cost_class, m.cost_bbox, m.cost_giou, m.alpha, m.gamma) == (2.0, 5.0, 2.0, 0.25, 2.0)
    assert paper_cfg.model.backbone.depth == 50, "ResNet-50-vd (Tables 1-2)"


def test_recipe_adamw_2e4_wd_1e4_warmup_2000_ema_09999_72_epochs_640px(paper_cfg):
    """Better Sampling, implementation details: AdamW lr 2e-4 (backbone lower: 0.1x [RT-DETR]),
    weight decay 1e-4, 2000-iteration linear warm-up, EMA 0.9999, 72 epochs; [RT-DETR] input
    640 x 640."""
    cfg = paper_cfg
    assert cfg.optimizer.lr == 2e-4 and cfg.optimizer.weight_decay == 1e-4
    assert "AdamW" in str(cfg.optimizer._target_)
    assert dict(cfg.optimizer.params.lr_factor_func.factors) == {"backbone.": 0.1}
    assert cfg.train.ema.enabled and cfg.train.ema.decay == 0.9999
    assert cfg.dataloader.train.total_batch_size == 16  # [RT-DETR]'s batch; the paper gives none
    assert cfg.train.max_iter == 72 * (6471 // 16), "72 epochs of VisDrone2019-DET train (6471 images)"
    sched = instantiate(cfg.lr_multiplier)
    at = lambda it: sched(it / cfg.train.max_iter)  # noqa: E731
    assert at(0) == pytest.approx(0.001)
    assert at(1000) == pytest.approx(0.001 + 0.999 * 0.5, rel=1e-6), "linear warm-up over 2000 iterations"
    assert at(2000) == pytest.approx(1.0) and at(cfg.train.max_iter - 1) == pytest.approx(1.0)
    assert list(cfg.train.multiscale.input_size) == [640, 640]
    resize = cfg.dataloader.test.mapper.augmentations[-1]
    assert tuple(resize.shape) == (640, 640)


# ------------------------------------------------------------------ SR's gradient path
def test_sr_gradient_reaches_the_generator_only_in_the_paper_literal_default():
    """SR as the paper writes it (``L_cls = sum_pos r_cls BCE``, ``L_reg = sum_pos r_reg
    [L1 + L_IoU]``, nothing detached): the weight generator learns through r, so its conv1 gets
    a nonzero gradient from the detection losses. sod2's option ``detach_normalize=True``
    (``model.criterion.better_sampling.reweighting.detach_normalize=True``) detaches r: the generator then gets
    exactly zero gradient (kept in the graph for DDP)."""
    cfg = get_config("bsdetr/bsdetr_r18s_synthetic.py")
    cfg.model.decoder.query_selection.num_queries = cfg.model.num_top_queries = 50  # 64 px inputs: 84 tokens
    assert cfg.model.criterion.better_sampling.reweighting.detach_normalize is False, "the paper literally by default"
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    sr = model.criterion.better_sampling.reweighting
    assert sr.detach_inputs is True  # [ours]: the generator reads detached features
    for detach_normalize in (False, True):
        if detach_normalize:  # the option as its override sets it, on the same weights
            option = apply_checked_overrides(get_config("bsdetr/bsdetr_r18s_synthetic.py"),
                                             ["model.criterion.better_sampling.reweighting.detach_normalize=True"],
                                             warn=False)
            sr.detach_normalize = option.model.criterion.better_sampling.reweighting.detach_normalize
            assert sr.detach_normalize is True
        model.zero_grad(set_to_none=True)
        with EventStorage(0):
            losses = model(training_batch(2, (64, 64), 4, 3))
        sum(losses.values()).backward()
        grad = sr.conv1.weight.grad
        assert grad is not None
        if detach_normalize:
            assert grad.abs().sum().item() == 0.0, "detach_normalize: r detached, the generator gets no gradient"
        else:
            assert grad.abs().sum().item() > 0, "SR (paper literally): r keeps its gradient into the generator"


def test_none_row_and_plain_twin():
    """Table 3's "none" row (``bsdetr_none_r50vd_visdrone.py``) differs from the paper's config
    only in the three parts (data, schedule, VFL 0.5 / 1.5 and weights shared); the plain twin
    (RT-DETR, ``bsdetr_plain_r50vd_visdrone.py``) only in the criterion's class and its
    ``better_sampling`` node."""
    assert config_difference(PAPER, "bsdetr/bsdetr_none_r50vd_visdrone.py") == [
        "model.criterion.better_sampling.class_target", "model.criterion.better_sampling.point_refinement",
        "model.criterion.better_sampling.reweighting"]
    assert config_difference(PAPER, "bsdetr/bsdetr_plain_r50vd_visdrone.py") == [
        "model.criterion._target_", "model.criterion.better_sampling"]
