"""Non-finite values in CFINet's parts (the "Results that cannot lie" issue; the other models'
cases are in tests/modeling/test_nonfinite.py): NaN IoUs are ignored by the dynamic-IoU
assigner and the max-IoU matcher, NaN boxes are never positives, CRPN's losses come out
non-finite and training stops like Detectron2's RPN, a NaN RoI feature gives a NaN imitation
loss and stays out of the exemplar bank."""
import logging

import pytest
import torch
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage

from sod2.modeling.matchers import MaxIoUMatcher
from sod2.modeling.methods.cfinet import DynamicIoUAssigner, ExemplarBank, Feat2Embed, FeatureImitation

from .test_crpn import _crpn

NAN = float("nan")


def test_dynamic_assigner_and_max_iou_matcher_ignore_nan_iou():
    iou = torch.tensor([[0.9, NAN, 0.1], [0.2, 0.3, 0.05]])
    _, labels = DynamicIoUAssigner()(iou, torch.tensor([10.0, 10.0]))
    assert labels.tolist() == [1, -1, 0]
    # Detectron2's Matcher asserted IoU >= 0 (False for NaN); the NaN column is ignored and
    # the others are labelled as with its IoUs at 0
    matches, labels = MaxIoUMatcher(pos_thresh=0.7, neg_thresh=0.3, min_pos_iou=0.3)(iou)
    assert labels.tolist() == [1, -1, 0] and matches[0].item() == 0


def test_crpn_stage2_labels_ignore_nan_boxes_and_losses_show_nan():
    torch.manual_seed(0)
    crpn = _crpn(16)
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 24.0, 24.0], [30.0, 30.0, 40.0, 40.0]])
    stage1 = torch.stack([anchors, anchors])
    stage1[0, 1] = NAN
    gts = [Instances((64, 64), gt_boxes=Boxes(torch.tensor([[8.0, 8.0, 24.0, 24.0]])),
                     gt_classes=torch.tensor([0]), gt_orig_areas=torch.tensor([256.0]))] * 2
    t = crpn.label_anchors(anchors, stage1, gts)  # (Detectron2's pairwise_iou gives a NaN box IoU 0)
    assert t[0].stage2_labels[1].item() != 1 and t[1].stage2_labels[1].item() == 1
    # NaN objectness logits of stage 2: the classification loss is NaN, not an exception
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (64, 64)])
    feats = {"p2": torch.randn(2, 16, 16, 16), "p3": torch.randn(2, 16, 8, 8)}
    with torch.no_grad():
        crpn.head.s2_cls.bias[0] = NAN
    crpn.train()
    seen, losses = {}, crpn.losses

    def spy(*args):
        seen.update(losses(*args))
        return seen

    crpn.losses = spy
    # Detectron2's convention for two-stage detectors: non-finite proposals in training raise
    # in find_top_rpn_proposals ("... Training has diverged."), after the losses
    with EventStorage(0), pytest.raises(FloatingPointError, match="Training has diverged"):
        crpn(images, feats, gts)
    assert not torch.isfinite(seen["loss_crpn_cls"]) and torch.isfinite(seen["loss_crpn_reg_s1"])


def test_crpn_non_finite_stage1_boxes_stop_training_like_detectron2_rpn():
    crpn = _crpn(16)
    with torch.no_grad():
        crpn.head.s1_reg.bias[0] = NAN
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    feats = {"p2": torch.randn(1, 16, 16, 16), "p3": torch.randn(1, 16, 8, 8)}
    gts = [Instances((64, 64), gt_boxes=Boxes(torch.tensor([[8.0, 8.0, 24.0, 24.0]])),
                     gt_classes=torch.tensor([0]), gt_orig_areas=torch.tensor([256.0]))]
    crpn.train()
    with EventStorage(0), pytest.raises(FloatingPointError, match="diverged"):
        crpn(images, feats, gts)
    crpn.eval()
    with torch.no_grad():
        props, _ = crpn(images, feats)  # inference falls back to the anchors: no exception
    assert torch.isfinite(props[0].proposal_boxes.tensor).all()


def test_feature_imitation_nan_feature_gives_nan_loss_and_stays_out_of_the_bank(caplog):
    K = 2
    bank = ExemplarBank(num_classes=K, capacity=4, channels=4, roi_size=7)
    bank.add(torch.ones(2, 4, 7, 7), torch.tensor([0, 1]))
    im = FeatureImitation(K, Feat2Embed(in_channels=4, roi_size=7, hidden_dim=8, out_dim=4, num_groups=1), bank,
                          hq_thresh=0.5, min_predictions=1)
    targets = [Instances((64, 64), gt_boxes=Boxes(torch.tensor([[10.0, 10.0, 30.0, 30.0]])),
                         gt_classes=torch.tensor([0]))]
    prop = Instances((64, 64), proposal_boxes=Boxes(torch.zeros(3, 4)), gt_classes=torch.tensor([0, K, K]),
                     gt_index=torch.tensor([0, 0, 0]), from_gt=torch.tensor([True, False, False]))
    roi_feats = torch.randn(3, 4, 7, 7)
    roi_feats[0, 2, 3, 3] = NAN  # the ground truth's own feature

    def pool(features, boxes):
        return torch.randn(sum(len(b) for b in boxes), 4, 7, 7)

    from sod2.modeling.methods.cfinet.feature_imitation import QualityEvidence
    evidence = [QualityEvidence(torch.tensor([0]), torch.tensor([0]), torch.tensor([[0.9, 0.05, 0.05]]),
                                torch.tensor([0.9]))]  # high quality: its feature would join the bank
    with EventStorage(0), caplog.at_level(logging.WARNING, logger="sod2"):
        losses = im(pool, [], [prop], targets, roi_feats, evidence)
    assert not torch.isfinite(losses["loss_con"])
    assert bank.bank_count.tolist() == [1, 1] and torch.equal(bank.ordered(0), torch.ones(1, 4, 7, 7))
    assert any("not stored" in r.getMessage() for r in caplog.records)
