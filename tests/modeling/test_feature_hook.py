"""The feature-hook slot of sod2's Detectron2 detectors (sod2/modeling/meta_arch/feature_hook.py):

* without a hook, ``SOD2GeneralizedRCNN`` / ``SOD2RetinaNet`` are Detectron2's
  ``GeneralizedRCNN`` / ``RetinaNet``: same weights and seed give bit-equal losses and
  detections (their ``forward`` is a copy of Detectron2's with the hook call added);
* a hand-written hook gets the exact network input (normalised batch, the raw images
  zero-padded like it, the channel order), its features are what the heads read (a hook
  doubling every level gives the outputs of a backbone doubling them), its losses join the
  loss dict after the detector's, its visuals come back per image under ``"visuals"``.
"""
import copy

import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.modeling import GeneralizedRCNN, RetinaNet
from detectron2.utils.events import EventStorage
from torch import nn

from sod2.config import get_config
from sod2.modeling.meta_arch import FeatureHookInput, FeatureHookOutput, SOD2GeneralizedRCNN, SOD2RetinaNet

from ..golden import golden_runs as G

CONFIGS = {
    "rcnn": ("baselines/faster_rcnn_R18s_fpn_synthetic.py", GeneralizedRCNN, SOD2GeneralizedRCNN),
    "retinanet": ("baselines/retinanet_R18s_fpn_synthetic.py", RetinaNet, SOD2RetinaNet),
}


def _build(kind: str, target=None):
    path, _, sod2_cls = CONFIGS[kind]
    cfg = get_config(path).model
    assert cfg._target_ is sod2_cls
    if target is not None:
        cfg._target_ = target
    model = instantiate(cfg)
    return model


def _same(ra: dict, rb: dict) -> None:
    assert ra["losses"] == rb["losses"]
    assert len(ra["detections"]) == len(rb["detections"]) == len(G.BATCH_SPEC)
    for da, db in zip(ra["detections"], rb["detections"]):
        assert da == db
    assert any(d["scores"] for d in rb["detections"]), "no detections: the comparison would be empty"


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_without_hook_equals_detectron2(kind):
    _, d2_cls, sod2_cls = CONFIGS[kind]
    ours, theirs = _build(kind), _build(kind, target=d2_cls)
    assert type(ours) is sod2_cls and type(theirs) is d2_cls and ours.feature_hook is None
    assert list(ours.state_dict()) == list(theirs.state_dict())
    _same(G.run_golden(ours), G.run_golden(theirs))


class DoublingHook(nn.Module):
    """Doubles every level; loss ``loss_toy`` = 3 x mean of the doubled first level; visuals:
    each image's raw-input sum. Keeps what it was given for the test to check."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, features, inputs: FeatureHookInput) -> FeatureHookOutput:
        assert isinstance(inputs, FeatureHookInput)
        self.seen.append(inputs)
        feats = {k: 2 * v for k, v in features.items()}
        losses = {"loss_toy": 3 * next(iter(feats.values())).mean()} if self.training else {}
        return FeatureHookOutput(feats, losses, [float(r.double().sum()) for r in inputs.raw])


class DoublingBackbone(nn.Module):
    """Wraps a backbone and doubles its levels: the reference for :class:`DoublingHook`."""

    def __init__(self, backbone):
        super().__init__()
        self.inner = backbone

    def forward(self, x):
        return {k: 2 * v for k, v in self.inner(x).items()}

    def __getattr__(self, name):  # size_divisibility, padding_constraints, output_shape
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.inner, name)


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_hook_features_losses_and_visuals_reach_the_detector(kind):
    hooked = _build(kind)
    hooked.feature_hook = DoublingHook()
    reference = _build(kind)
    G.fill_model(reference)  # the wrapper changes the keys: fill first, then wrap
    reference.backbone = DoublingBackbone(reference.backbone)
    G.fill_model(hooked)
    assert all(torch.equal(a, b) for a, b in zip(hooked.state_dict().values(), reference.state_dict().values()))

    batch = G.golden_batch()
    for m in (hooked, reference):
        m.train()
    with EventStorage(0):
        G._seed()
        got = hooked(G.golden_batch())
        G._seed()
        want = reference(G.golden_batch())
    # the detector's losses first, exactly the reference's; the hook's after them
    assert list(got) == list(want) + ["loss_toy"]
    assert all(torch.equal(got[k], want[k]) for k in want)
    inp = hooked.feature_hook.seen[-1]
    # the hook saw the network input: normalised batch, raw images zero-padded like it
    d = hooked.backbone.size_divisibility
    hp = -(-max(b["image"].shape[1] for b in batch) // d) * d
    wp = -(-max(b["image"].shape[2] for b in batch) // d) * d
    raw = torch.zeros(len(batch), 3, hp, wp, dtype=torch.uint8)
    for i, b in enumerate(batch):
        raw[i, :, :b["image"].shape[1], :b["image"].shape[2]] = b["image"]
    assert inp.raw.dtype == torch.uint8 and torch.equal(inp.raw, raw)
    assert inp.input_format == hooked.input_format == "BGR"
    assert tuple(inp.images.tensor.shape) == (len(batch), 3, hp, wp)
    assert inp.images.image_sizes == [tuple(b["image"].shape[1:]) for b in batch]
    norm = (batch[1]["image"].float() - hooked.pixel_mean) / hooked.pixel_std
    assert torch.equal(inp.images.tensor[1, :, :96, :128], norm)
    # loss_toy: 3 x mean of the doubled first level, computed from (a copy of: a training-mode
    # forward updates batch-norm statistics) the reference's backbone
    with torch.no_grad():
        first = next(iter(copy.deepcopy(reference.backbone)(inp.images.tensor).values()))
    torch.testing.assert_close(got["loss_toy"].detach(), 3 * first.mean(), rtol=1e-6, atol=0)

    for m in (hooked, reference):
        m.eval()
    with torch.no_grad():
        out, ref = hooked(G.golden_batch(False)), reference(G.golden_batch(False))
    for o, r, b in zip(out, ref, batch):
        assert set(o) == {"instances", "visuals"} and set(r) == {"instances"}
        assert o["visuals"] == float(b["image"].double().sum())  # padding added zeros only
        for f in ("pred_boxes", "scores", "pred_classes"):
            a, e = getattr(o["instances"], f), getattr(r["instances"], f)
            assert torch.equal(a.tensor if f == "pred_boxes" else a, e.tensor if f == "pred_boxes" else e)
    assert len(out[0]["instances"]) > 0


def test_a_hook_must_be_a_module_and_return_the_typed_output():
    with pytest.raises(TypeError, match="feature_hook must be an nn.Module"):
        cfg = get_config(CONFIGS["rcnn"][0]).model
        cfg.feature_hook = L(FeatureHookOutput)(features={})  # an object, not a module
        instantiate(cfg)

    class DictHook(nn.Module):
        def forward(self, features, inputs):
            return features

    m = _build("rcnn")
    m.feature_hook = DictHook()
    m.eval()
    with pytest.raises(TypeError, match="DictHook returned dict, not a FeatureHookOutput"), torch.no_grad():
        m(G.golden_batch(False))


def test_yacs_configs_still_build_them_without_a_hook():
    """Like Detectron2's classes, the detectors build from a yacs config (``@configurable``)."""
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "SOD2GeneralizedRCNN"
    model = build_model(cfg)
    assert type(model) is SOD2GeneralizedRCNN and model.feature_hook is None
