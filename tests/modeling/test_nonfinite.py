"""Non-finite values in sod2's models (the "Results that cannot lie" issue):

* predictions with NaN/inf go through every assigner and matcher without an exception, the
  broken predictions are matched first, and the losses come out non-finite (never a finite
  loss that hides them), so that Detectron2's trainer stops with "Loss became infinite or
  NaN at iteration=N!" and the loss names (a real training run with an enormous lr);
* non-finite input pixels give one warning line, for every detector family the configs build;
* constructors refuse nonsensical sizes with a one-line UserError.
"""
import itertools
import logging
import math

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.engine import SimpleTrainer
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from sod2.config import get_config
from sod2.errors import UserError
from sod2.modeling.assigners import SimOTAAssigner
from sod2.modeling.checks import finite_cost
from sod2.modeling.criterion import OutputSet, SetCriterion
from sod2.modeling.methods.better_sampling import (BetterSampling, BetterSamplingCriterion, SamplePointRefinement,
                                                   SampleReweighting, ScaleAlignedTarget)
from sod2.modeling.methods.better_sampling import BetterSampling, BetterSamplingYOLOX
from sod2.modeling.heads import YOLOXHead
from sod2.modeling.matchers import HungarianMatcher
from sod2.modeling.methods.cfinet import ExemplarBank
from sod2.modeling.transformer import ContrastiveDenoising, DecoderLayerOutput

from .test_rtdetr import random_inputs, tiny_config, tiny_model
from .test_yolox import _inputs as yolox_inputs
from .test_yolox import build_yolox

NAN, INF = float("nan"), float("inf")


def _all_finite(losses):
    return all(bool(torch.isfinite(v)) for v in losses.values())


# ------------------------------------------------------------------ the cost
def test_finite_cost_by_hand():
    finite = torch.tensor([[1.0, -3.0], [0.5, 2.0]])
    assert finite_cost(finite) is finite  # untouched, not even copied
    # max |finite| = 3 -> every non-finite entry becomes -(2 * 3 + 1) = -7
    got = finite_cost(torch.tensor([[1.0, -3.0], [NAN, INF], [-INF, 2.0]]))
    assert got.tolist() == [[1.0, -3.0], [-7.0, -7.0], [-7.0, 2.0]]
    assert finite_cost(torch.full((2, 2), NAN)).tolist() == [[-1.0, -1.0], [-1.0, -1.0]]


# ------------------------------------------------------------------ SimOTA
def _simota_image(boxes, cls_logits, obj_logits):
    """One 16x16 gt of class 0 and four stride-8 locations whose centres (4, 4), (12, 4),
    (4, 12), (12, 12) all lie in its centre square (half side 1.5 x 8 around (8, 8))."""
    centers = torch.tensor([[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]])
    return dict(pred_boxes=torch.tensor(boxes), cls_logits=torch.tensor(cls_logits),
                obj_logits=torch.tensor(obj_logits), anchor_centers=centers, strides=torch.full((4,), 8.0),
                gt_boxes=torch.tensor([[0.0, 0.0, 16.0, 16.0]]), gt_classes=torch.tensor([0]))


def test_simota_matches_the_non_finite_candidates_first():
    a = SimOTAAssigner()
    boxes = [[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 16.0, 8.0], [0.0, 0.0, 8.0, 8.0], [100.0, 100.0, 110.0, 110.0]]
    # IoUs 1, 0.5, 0.25, 0: k = int(1.75) = 1; finite: the exact box (location 0) wins
    r = a(**_simota_image(boxes, [[0.0, 0.0]] * 4, [0.0] * 4))
    assert r.fg_mask.tolist() == [True, False, False, False]
    # a NaN class logit at location 2 (torch's BCE refused it before): it is the positive
    r = a(**_simota_image(boxes, [[0.0, 0.0], [0.0, 0.0], [NAN, 0.0], [0.0, 0.0]], [0.0] * 4))
    assert r.fg_mask.tolist() == [False, False, True, False] and r.matched_iou.tolist() == [0.25]
    # a NaN objectness (location 1) and a NaN box (location 3, its IoU counts 0 towards k):
    # IoUs 1, 0.5, 0.5, nan -> k = int(2.0) = 2, both broken locations taken, the NaN IoU kept
    boxes[2] = [0.0, 0.0, 16.0, 8.0]
    boxes[3] = [NAN, 0.0, 4.0, 4.0]
    r = a(**_simota_image(boxes, [[0.0, 0.0]] * 4, [0.0, NAN, 0.0, 0.0]))
    assert r.fg_mask.tolist() == [False, True, False, True] and r.num_fg == 2
    assert r.matched_iou[0].item() == 0.5 and math.isnan(r.matched_iou[1].item())


def test_simota_with_every_prediction_nan_is_deterministic():
    a = SimOTAAssigner()
    image = _simota_image([[NAN] * 4] * 4, [[NAN, NAN]] * 4, [NAN] * 4)
    r1, r2 = a(**image), a(**image)
    assert r1.num_fg == 1 and torch.equal(r1.fg_mask, r2.fg_mask)  # k = 1 from IoUs counted 0


def _yolox_losses(model, inputs):
    model.train()
    with EventStorage(0):
        return model(inputs)


@pytest.mark.parametrize("where", ["cls", "reg"])
@pytest.mark.parametrize("better_sampling", [False, True])
def test_yolox_nan_predictions_give_non_finite_losses(where, better_sampling):
    """A NaN bias on P3 (class 0 logits, or the box outputs): SimOTA raised "all elements of
    input should be between 0 and 1" for the class logits before; now the losses that the
    broken positives enter are NaN (with Better Sampling's ST and SR as well)."""
    torch.manual_seed(0)
    kwargs = dict(arch=BetterSamplingYOLOX, better_sampling=BetterSampling(
        class_target=ScaleAlignedTarget(), reweighting=SampleReweighting(hidden_dim=32))) if better_sampling else {}
    model = build_yolox(num_classes=3, use_l1=True, **kwargs)
    with torch.no_grad():
        (model.head.cls_preds if where == "cls" else model.head.reg_preds)["p3"].bias[0] = NAN
    losses = _yolox_losses(model, yolox_inputs(2, num_gt=(3, 3)))
    assert set(losses) == {"loss_iou", "loss_obj", "loss_cls", "loss_l1"}
    broken = {"cls": ["loss_cls"], "reg": ["loss_iou", "loss_l1"]}[where]
    assert all(not torch.isfinite(losses[k]) for k in broken)


# ------------------------------------------------------------------ Hungarian / set criterion
def _target(*boxes):
    return {"labels": torch.zeros(len(boxes), dtype=torch.int64), "boxes": torch.tensor(boxes)}


def test_hungarian_matches_broken_queries_first():
    m = HungarianMatcher()
    # query 1 is exactly gt 1, query 2 is far from both; query 0 has NaN logits (scipy
    # refused the matrix before): it takes one gt, the finite optimum the other
    logits = torch.tensor([[[NAN], [3.0], [-3.0]]])
    boxes = torch.tensor([[[0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2], [0.95, 0.05, 0.05, 0.05]]])
    (q, g), = m(logits, boxes, [_target([0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2])])
    assert q.tolist() == [0, 1] and g.tolist() == [0, 1]
    # an infinite logit and a NaN box in the same matrix: both broken queries are matched
    logits = torch.tensor([[[0.0], [INF], [0.0]]])
    boxes[0, 2, 0] = NAN
    (q, g), = m(logits, boxes, [_target([0.2, 0.2, 0.1, 0.1], [0.7, 0.7, 0.2, 0.2])])
    assert q.tolist() == [1, 2]


def test_hungarian_all_nan_is_a_valid_deterministic_matching():
    m = HungarianMatcher()
    logits, boxes = torch.full((1, 4, 2), NAN), torch.full((1, 4, 4), NAN)
    target = [_target([0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2])]
    (q1, g1), = m(logits, boxes, target)
    (q2, g2), = m(logits, boxes, target)
    assert len(q1) == 3 and sorted(g1.tolist()) == [0, 1, 2] and len(set(q1.tolist())) == 3
    assert torch.equal(q1, q2) and torch.equal(g1, g2)


def test_one_nan_box_among_finite_queries_is_not_hidden():
    """The criterion on hand-built outputs: 4 queries with finite logits, one NaN box, one
    gt. Matching the NaN query makes loss_bbox/loss_giou NaN; a matcher steering away from it
    would have returned finite losses for a model that outputs NaN."""
    crit = SetCriterion(matcher=HungarianMatcher(), num_classes=2)
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1], [NAN, 0.5, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]])
    out = [OutputSet("", DecoderLayerOutput(logits=torch.zeros(1, 4, 2), boxes=boxes, layer_index=0))]
    losses = crit(out, [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}])
    assert not torch.isfinite(losses["loss_bbox"]) and not torch.isfinite(losses["loss_giou"])
    out[0].output.boxes = torch.nan_to_num(boxes, nan=0.9)
    assert _all_finite(crit(out, [{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]))


@pytest.mark.parametrize("better_sampling", [False, True])
def test_rtdetr_nan_predictions_give_non_finite_losses(better_sampling):
    """NaN in the decoder's input projection: every output set (decoder layers, encoder
    top-K, denoising groups) is NaN; the matcher raised scipy's "matrix contains invalid
    numeric entries" before; now every loss is there and non-finite (with Better Sampling's
    ST, SR and SPR as well)."""
    if better_sampling:
        cfg = tiny_config()
        cfg.criterion._target_ = BetterSamplingCriterion
        cfg.criterion.better_sampling = L(BetterSampling)(
            class_target=L(ScaleAlignedTarget)(), reweighting=L(SampleReweighting)(hidden_dim=32),
            point_refinement=L(SamplePointRefinement)(etas=[1.5, 1.2, 1.0], num_points=2))
        torch.manual_seed(0)
        model = instantiate(cfg)
    else:
        model = tiny_model()
    with torch.no_grad():
        model.decoder.input_proj[0].weight[0, 0] = NAN
    model.train()
    with EventStorage(0):
        losses = model(random_inputs([(96, 128), (128, 64)], (2, 3), seed=2))
    assert "loss_vfl" in losses and "loss_bbox_dn_0" in losses and "loss_giou_enc" in losses
    if better_sampling:
        assert "loss_offset" in losses and "loss_atten_dn_0" in losses
    assert all(not torch.isfinite(v) for v in losses.values()), {k: v.item() for k, v in losses.items()}


def test_denoising_is_built_from_ground_truth_only():
    """The denoising queries never see a prediction: NaN predictions cannot reach them
    (their losses become non-finite through the decoder, test above)."""
    dn = ContrastiveDenoising(num_classes=3, hidden_dim=8, num_denoising=4)
    q = dn([{"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}], num_queries=5)
    assert torch.isfinite(q.boxes_unact).all() and torch.isfinite(q.embed).all()


# ------------------------------------------------------------------ a real training run
@pytest.mark.parametrize("config,size", [("fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py", 64),
                                         ("bsdetr/bsdetr_r18s_synthetic.py", 128)])
def test_enormous_lr_stops_with_detectron2s_loss_message(config, size):
    """The config's model and optimizer (lr 1e30; RT-DETR's with its gradient clipping) in
    Detectron2's SimpleTrainer, the trainer of tools/lazyconfig_train_net.py, on a fixed
    batch of two small images (the synthetic loader at full size makes the test ten times
    slower and changes nothing here): the weights overflow in the first step and the second
    forward is NaN. Training stops with Detectron2's message and the loss names, not with an
    exception from inside a matcher (scipy's "matrix contains invalid numeric entries" for
    RT-DETR, torch's "all elements of input should be between 0 and 1" for YOLOX)."""
    cfg = get_config(config)
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    model.train()
    cfg.optimizer.params.model = model
    cfg.optimizer.lr = 1e30
    g = torch.Generator().manual_seed(0)
    batch = [{"image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
              "instances": Instances((size, size), gt_boxes=Boxes(torch.tensor([[10.0, 10.0, 30.0, 26.0],
                                                                                [40.0, 8.0, 52.0, 20.0]])),
                                     gt_classes=torch.tensor([0, 2]))} for _ in range(2)]
    trainer = SimpleTrainer(model, itertools.repeat(batch), instantiate(cfg.optimizer))
    with pytest.raises(FloatingPointError) as err:
        trainer.train(0, 3)
    msg = str(err.value)
    assert msg.startswith("Loss became infinite or NaN at iteration=1!")
    names = ("loss_vfl", "loss_bbox_dn_0", "loss_giou_enc") if "bsdetr" in config else ("loss_iou", "loss_cls")
    assert "loss_dict = {" in msg and all(f"'{n}'" in msg for n in names)


# ------------------------------------------------------------------ input pixels
FAMILIES = ["fgprobe/fgprobe_yolox_tiny_p2_synthetic.py", "bsdetr/bsdetr_r18s_synthetic.py",
            "baselines/faster_rcnn_R18s_fpn_synthetic.py", "baselines/retinanet_R18s_fpn_synthetic.py",
            "cfinet/cfinet_R18s_fpn_synthetic.py", "srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py",
            "srtod/retinanet_srtod_R18s_fpn_synthetic.py"]


@pytest.mark.parametrize("config", FAMILIES)
def test_non_finite_input_pixels_warn_once(config, caplog):
    torch.manual_seed(0)
    model = instantiate(get_config(config).model).eval()
    good = torch.randint(0, 256, (3, 128, 128)).float()
    bad = good.clone()
    bad[:, 5, 6] = NAN     # one pixel, every channel
    bad[1, 20, 30] = NAN   # one pixel, one channel
    bad[2, 40, 41] = INF   # one pixel, +inf
    inputs = [{"image": good, "height": 128, "width": 128, "file_name": "good.png"},
              {"image": bad, "height": 128, "width": 128, "file_name": "bad.png"}]
    with caplog.at_level(logging.WARNING, logger="sod2"), torch.no_grad():
        out = model(inputs)
    records = [r for r in caplog.records if r.name == "sod2.modeling.checks"]
    assert len(records) == 1, [r.getMessage() for r in records]
    msg = records[0].getMessage()
    assert "1 of 2 input images contain non-finite (NaN or inf) pixels (3 pixels in all" in msg
    assert "1 (bad.png)" in msg and "good.png" not in msg and "\n" not in msg
    assert len(out) == 2 and torch.isfinite(out[1]["instances"].pred_boxes.tensor).all()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sod2"), torch.no_grad():
        model(inputs[:1])
    assert not [r for r in caplog.records if r.name == "sod2.modeling.checks"]


def test_training_with_non_finite_pixels_warns_and_the_losses_stop_it(caplog):
    """Training warns as well (no exception of sod2's own): the NaN reaches the losses, and
    Detectron2's trainer stops on them right after this line names the cause."""
    torch.manual_seed(0)
    model = build_yolox(num_classes=3)
    inputs = yolox_inputs(2, num_gt=(3, 3))
    inputs[0]["image"] = inputs[0]["image"].float()
    inputs[0]["image"][0, 3, 4] = NAN
    with caplog.at_level(logging.WARNING, logger="sod2"):
        losses = _yolox_losses(model, inputs)
    msgs = [r.getMessage() for r in caplog.records if r.name == "sod2.modeling.checks"]
    assert len(msgs) == 1 and msgs[0].startswith("YOLOX: 1 of 2 input images") and "losses are meaningless" in msgs[0]
    assert not torch.isfinite(losses["loss_obj"])


# ------------------------------------------------------------------ sizes
def test_constructors_refuse_nonsensical_sizes():
    from detectron2.layers import ShapeSpec

    cases = [
        (lambda: YOLOXHead({"p3": ShapeSpec(channels=8, stride=8)}, 0), "YOLOXHead: num_classes"),
        (lambda: YOLOXHead({"p3": ShapeSpec(channels=8, stride=8)}, 3, feat_channels=0), "YOLOXHead: feat_channels"),
        (lambda: SetCriterion(matcher=HungarianMatcher(), num_classes=0), "SetCriterion: num_classes"),
        (lambda: ContrastiveDenoising(num_classes=-1), "ContrastiveDenoising: num_classes"),
        (lambda: ExemplarBank(num_classes=2, capacity=0), "ExemplarBank: capacity"),
        (lambda: SimOTAAssigner(topk=0), "SimOTAAssigner: topk"),
        (lambda: YOLOXHead({"p3": ShapeSpec(channels=8, stride=8)}, 2.5), "YOLOXHead: num_classes"),
    ]
    for build, start in cases:
        with pytest.raises(UserError) as err:
            build()
        assert str(err.value).startswith(start + " must be an integer >= ") and "\n" not in str(err.value)


@pytest.mark.parametrize("config", ["bsdetr/bsdetr_r18s_synthetic.py", "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py"])
def test_config_with_zero_classes_is_a_user_error(config):
    cfg = get_config(config)
    cfg.model.num_classes = 0
    with pytest.raises(UserError, match=r"num_classes must be an integer >= 1, got 0"):
        instantiate(cfg.model)
