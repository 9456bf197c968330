"""Better Sampling injected into RT-DETR (BetterSamplingCriterion on the tiny RT-DETR of
tests/modeling/test_rtdetr.py): the detections are RT-DETR's (inference unchanged), the
training losses gain SPR's terms on the decoder layers (not the encoder's set), and the
decoder fills the fields the criterion asks for and no others."""
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from sod2.modeling.methods.better_sampling import (BetterSampling, BetterSamplingCriterion, SamplePointRefinement,
                                                   SampleReweighting, ScaleAlignedTarget)

from ...modeling.test_rtdetr import random_inputs, tiny_config, tiny_model


def test_better_sampling_changes_losses_only():
    plain = tiny_model()
    cfg = tiny_config(eval_size=(640, 640))
    cfg.criterion._target_ = BetterSamplingCriterion
    cfg.criterion.better_sampling = L(BetterSampling)(
        class_target=L(ScaleAlignedTarget)(), reweighting=L(SampleReweighting)(hidden_dim=32),
        point_refinement=L(SamplePointRefinement)(etas=[1.5, 1.2, 1.0], num_points=2))
    bs = instantiate(cfg)
    assert bs.criterion.required_outputs == {"hidden", "box_hidden", "offsets", "attention"}
    result = bs.load_state_dict(plain.state_dict(), strict=False)
    assert not result.unexpected_keys and result.missing_keys
    assert all(k.startswith("criterion.better_sampling.reweighting.") for k in result.missing_keys)
    # non-square inputs of two sizes (a padded batch), other than the precomputed 640x640
    inputs = random_inputs([(96, 128), (128, 64)], (0, 0), seed=1)
    plain.eval()
    bs.eval()
    with torch.no_grad():
        a, b = plain(inputs), bs(inputs)
    for x, y in zip(a, b):
        assert len(x["instances"]) == 25
        for field in ("scores", "pred_classes"):
            assert torch.equal(x["instances"].get(field), y["instances"].get(field))
        assert torch.equal(x["instances"].pred_boxes.tensor, y["instances"].pred_boxes.tensor)
    assert a[1]["instances"].image_size == (128, 64)
    bs.train()
    with EventStorage(0):
        losses = bs(random_inputs([(96, 128), (128, 64)], (2, 3), seed=2))
    assert "loss_offset" in losses and "loss_atten_dn_0" in losses and "loss_offset_enc" not in losses
    assert all(torch.isfinite(v) for v in losses.values())


def test_the_decoder_fills_only_the_fields_asked_for():
    model = tiny_model()
    model.train()
    features = model.encoder(model.backbone(torch.rand(1, 3, 64, 64)))
    with torch.no_grad():
        bare = model.decoder(features, None)
        full = model.decoder(features, None, frozenset({"hidden", "box_hidden", "offsets", "attention"}))
    for layer in bare.layers:
        assert all(getattr(layer, f) is None for f in ("hidden", "box_hidden", "ref_boxes", "offsets", "attention"))
    assert bare.encoder.hidden is None and bare.encoder.box_hidden is None
    for a, b in zip(bare.layers, full.layers):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.boxes, b.boxes)
        assert b.hidden is not None and b.offsets is not None and b.ref_boxes is None
    assert full.encoder.hidden is not None
