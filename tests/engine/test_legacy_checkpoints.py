"""Old sod2 checkpoints keep loading after issue 16 moved the methods' tensors
(``sod2.utils.convert.LEGACY_RENAMES``): through ``load_for_inference`` (demo, eval-only),
the training checkpointers (``train.init_checkpoint``, ``--resume``, the EMA's training
weights) and ``tools/convert_weights.py sod2-layout``.

The old checkpoints are built from ``tests/fixtures/legacy-keys/<stem>.json`` (the keys, shapes
and dtypes of each method model as it was before the move), each tensor ``fill(old key)``. Since
``fill`` is a function of the name, a tensor that lands on the right new key has the value
``fill(canonical_key(new key))``: the loader's rules (``LEGACY_RENAMES``, old -> new) are checked
against the golden runs' ``CANONICAL_RENAMES`` (new -> old), two tables written apart.
"""
import json
import logging
from pathlib import Path

import pytest
import torch
from detectron2.engine.train_loop import SimpleTrainer

from sod2.engine.checkpoint import AtomicDetectionCheckpointer, load_for_inference
from sod2.engine.ema import EMACheckpointer, ModelEMA
from sod2.utils.convert import ConversionError, LEGACY_RENAMES, upgrade_sod2_state_dict

from ..golden import golden_runs as G
from ..golden.config_snapshots import current_path, recorded_stem
from ..modules import tool_module

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy-keys"
DTYPES = {"float32": torch.float32, "int64": torch.int64, "float64": torch.float64, "bool": torch.bool}


def old_state_dict(stem: str):
    rec = json.loads((FIXTURES / f"{recorded_stem(stem)}.json").read_text())
    sd = {k: G.fill(k, shape, DTYPES[dtype]) for k, (shape, dtype, _) in rec["keys"].items()}
    return current_path(rec["config"]), sd


def expected_values(model):
    sd = model.state_dict()  # canonical_key's SR-TOD rule depends on the model's other keys
    return {k: G.fill(G.canonical_key(k, list(sd)), v.shape, v.dtype) for k, v in sd.items()}


def assert_loaded(model):
    want = expected_values(model)
    got = model.state_dict()
    wrong = [k for k in want if not torch.equal(got[k], want[k])]
    assert not wrong, f"{len(wrong)} tensors did not land on their new key, e.g. {wrong[:5]}"


# -- the rules, on hand-written keys ------------------------------------------------------------

def test_rules_rename_each_method_by_hand():
    old = {"backbone.fpn.bottom_up.stem.conv1.weight": 1, "backbone.fpn.fpn_lateral2.weight": 2,
           "backbone.head.ups.0.tconv.weight": 3, "backbone.threshold.thresh": 4, "backbone.dgfe.mlp.0.bias": 5,
           "head.probe.q_cls.weight": 6, "head.cls_preds.p3.weight": 7,
           "criterion.reweighting.conv1.weight": 8, "reweighting.norm1.running_mean": 9, "roi_heads.box_head.fc1.weight": 10}
    new, applied = upgrade_sod2_state_dict(old)
    assert list(new) == ["backbone.bottom_up.stem.conv1.weight", "backbone.fpn_lateral2.weight",
                         "feature_hook.head.ups.0.tconv.weight", "feature_hook.threshold.thresh",
                         "feature_hook.dgfe.mlp.0.bias", "probe.q_cls.weight", "head.cls_preds.p3.weight",
                         "criterion.better_sampling.reweighting.conv1.weight",
                         "better_sampling.reweighting.norm1.running_mean", "roi_heads.box_head.fc1.weight"]
    assert list(new.values()) == list(range(1, 11))
    assert applied == list(LEGACY_RENAMES)


def test_rules_apply_only_where_the_model_wants_the_new_keys():
    old = {"backbone.fpn.fpn_lateral2.weight": 1, "head.probe.pred.weight": 2}
    # today's layout: nothing to do
    assert upgrade_sod2_state_dict(old, model_keys=list(old)) == (old, [])
    # a model without the new keys (another model): left alone
    assert upgrade_sod2_state_dict(old, model_keys=["roi_heads.x"]) == (old, [])
    # only the method whose new keys the model has
    new, applied = upgrade_sod2_state_dict(old, model_keys=["probe.pred.weight", "backbone.fpn.fpn_lateral2.weight"])
    assert new == {"backbone.fpn.fpn_lateral2.weight": 1, "probe.pred.weight": 2}
    assert applied == ["Foreground Probing (head.probe.* -> probe.*)"]


def test_a_checkpoint_mixing_both_layouts_is_refused():
    with pytest.raises(ConversionError, match="both 'probe.pred.weight'"):
        upgrade_sod2_state_dict({"probe.pred.weight": 1, "head.probe.pred.weight": 2})


def test_no_model_of_today_has_an_old_key():
    """The converter applies the rules without a model: that is safe only while no config's
    model has a key the rules would rename."""
    for stem in G.GOLDEN_CONFIGS:
        keys = G.build_model(G.GOLDEN_CONFIGS[stem]).state_dict().keys()
        _, applied = upgrade_sod2_state_dict(dict.fromkeys(keys, 0))
        assert applied == [], (stem, applied)


# -- through the loaders ------------------------------------------------------------------------

@pytest.mark.parametrize("stem", G.LEGACY_KEY_CONFIGS)
def test_old_checkpoint_loads_for_inference(stem, tmp_path, caplog):
    config, sd = old_state_dict(stem)
    model = G.build_model(config)
    path = tmp_path / "old.pth"
    torch.save({"model": sd}, path)
    with caplog.at_level(logging.WARNING, logger="sod2.engine.checkpoint"):
        report = load_for_inference(model, str(path))
    assert report["unmatched"] == 0
    assert_loaded(model)
    moved = any(upgrade_sod2_state_dict(sd)[1])
    assert ("older sod2 layout" in caplog.text) == moved, caplog.text


@pytest.mark.parametrize("stem", ["faster_rcnn_srtod_R18s_fpn_synthetic", "bsdetr_r18s_synthetic"])
def test_converter_rewrites_the_file(stem, tmp_path, capsys):
    config, sd = old_state_dict(stem)
    src, dst = tmp_path / "old.pth", tmp_path / "new.pth"
    torch.save({"model": sd, "optimizer": {"state": {}}, "iteration": 99, "note": "kept",
                "ema": {"updates": 3, "train_model": sd}}, src)
    tool = tool_module("convert_weights")
    assert tool.main(["sod2-layout", str(src), str(dst)]) == 0
    assert "renamed" in capsys.readouterr().out
    out = torch.load(dst, weights_only=False)
    assert "optimizer" not in out and "iteration" not in out and out["note"] == "kept"
    for weights in (out["model"], out["ema"]["train_model"]):
        model = G.build_model(config)
        model.load_state_dict(weights, strict=True)
        assert_loaded(model)
    # a file already in today's layout: one line, exit 2, nothing written
    again = tmp_path / "again.pth"
    assert tool.main(["sod2-layout", str(dst), str(again)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already in today's sod2 layout" in err and len(err.splitlines()) == 1
    assert not again.exists()


def _trainer(model):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    return SimpleTrainer(model, [], opt)


def test_init_checkpoint_and_resume_from_an_old_layout(tmp_path, caplog):
    config, sd = old_state_dict("faster_rcnn_srtod_R18s_fpn_synthetic")
    # a foreign optimizer state: restoring it would attach momenta to the wrong parameters
    foreign = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, momentum=0.9).state_dict()
    foreign["state"] = {0: {"momentum_buffer": torch.ones(3)}}
    torch.save({"model": sd, "trainer": {"iteration": 41, "optimizer": foreign}}, tmp_path / "model_0000041.pth")
    (tmp_path / "last_checkpoint").write_text("model_0000041.pth")

    model = G.build_model(config)  # train.init_checkpoint: weights only
    AtomicDetectionCheckpointer(model, str(tmp_path)).resume_or_load(str(tmp_path / "model_0000041.pth"),
                                                                     resume=False)
    assert_loaded(model)

    model = G.build_model(config)  # --resume
    trainer = _trainer(model)
    fresh = trainer.optimizer.state_dict()
    with caplog.at_level(logging.WARNING, logger="sod2.engine.checkpoint"):
        AtomicDetectionCheckpointer(model, str(tmp_path), trainer=trainer).resume_or_load("", resume=True)
    assert_loaded(model)
    assert trainer.iter == 41
    assert trainer.optimizer.state_dict()["state"] == fresh["state"] == {}
    assert "optimizer's state" in caplog.text


def test_ema_checkpoint_training_weights_of_an_old_layout(tmp_path):
    config, sd = old_state_dict("fgprobe_yolox_tiny_p2_synthetic")
    torch.save({"model": sd, "ema": {"updates": 5, "train_model": sd}}, tmp_path / "model_final.pth")
    model = G.build_model(config)
    ema = ModelEMA(model)
    EMACheckpointer(model, str(tmp_path), ema=ema).load(str(tmp_path / "model_final.pth"))
    assert_loaded(model)
    assert ema.updates == 5
    want = expected_values(ema.module)
    assert all(torch.equal(v, want[k]) for k, v in ema.module.state_dict().items())
