"""The RT-DETR and PResNet checkpoint converters (sod2/utils/convert.py, tools/convert_weights.py
``rtdetr`` / ``presnet``): state dicts with the reference's names and shapes
(tests/fixtures/reference-keys/rtdetr_*.json, every tensor holding its own id) are converted and
loaded into sod2's RT-DETR built from configs/rtdetr/, with nothing missing, nothing unexpected
and each tensor where it belongs; both checkpoint layouts; bad input is one line and exit 1."""
import json
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from sod2.config import get_config
from sod2.utils.convert import (ConversionError, convert_presnet_state_dict, convert_rtdetr_state_dict)

from ..modules import tool_module

REPO = Path(__file__).resolve().parents[2]
REF_KEYS = REPO / "tests" / "fixtures" / "reference-keys"
# fixture -> (sod2 config, decoder layers, bottleneck blocks)
MODELS = {
    "r18vd": ("rtdetr/rtdetr_r18vd_coco.py", 3, False),
    "r34vd": ("rtdetr/rtdetr_r34vd_coco.py", 4, False),
    "r50vd": ("rtdetr/rtdetr_r50vd_coco.py", 6, True),
    "r50vd_m": ("rtdetr/rtdetr_r50vd_m_coco.py", 6, True),
    "r101vd": ("rtdetr/rtdetr_r101vd_coco.py", 6, True),
}
# precomputed for a 640x640 input, not weights: dropped by the converter
PRECOMPUTED = {"decoder.anchors": (1, 8400, 4), "decoder.valid_mask": (1, 8400, 1), "encoder.pos_embed2": (1, 400, 256)}


def _convert_main(argv):
    return tool_module("convert_weights").main(argv)


def _reference_state_dict(name, offset=0):
    """The reference's names and shapes; every tensor holds its own id (offset, offset + 1, ...)
    so that its destination is recognisable (num_batches_tracked as int64, as in the reference)."""
    keys = json.loads((REF_KEYS / f"rtdetr_{name}.json").read_text())["keys"]
    return {k: torch.full(shape, i + offset, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
            for i, (k, shape) in enumerate(keys.items())}


def _model(name):
    return instantiate(get_config(MODELS[name][0]).model)


def _ids(sd):
    return {k: int(v.flatten()[0].item()) if v.numel() else None for k, v in sd.items()}


def _spot_pairs(name):
    """reference name -> sod2 name, written out here (independent of the converter's rules)."""
    _, layers, bottleneck = MODELS[name]
    last = layers - 1
    pairs = {
        "backbone.conv1.conv1_1.conv.weight": "backbone.stem.conv1_1.weight",
        "backbone.conv1.conv1_3.norm.running_var": "backbone.stem.conv1_3.norm.running_var",
        "backbone.res_layers.0.blocks.0.short.conv.weight": "backbone.res2.0.shortcut.weight",
        "backbone.res_layers.0.blocks.0.short.norm.bias": "backbone.res2.0.shortcut.norm.bias",
        "backbone.res_layers.2.blocks.0.short.conv.conv.weight": "backbone.res4.0.shortcut.conv.weight",
        "backbone.res_layers.3.blocks.0.short.conv.norm.running_mean": "backbone.res5.0.shortcut.conv.norm.running_mean",
        "backbone.res_layers.3.blocks.1.branch2b.norm.weight": "backbone.res5.1.conv2.norm.weight",
        "backbone.res_layers.1.blocks.1.branch2a.conv.weight": "backbone.res3.1.conv1.weight",
        "encoder.input_proj.2.0.weight": "encoder.input_proj.2.0.weight",
        "encoder.input_proj.0.1.running_var": "encoder.input_proj.0.1.running_var",
        "encoder.encoder.0.layers.0.self_attn.in_proj_weight": "encoder.encoder.0.layers.0.self_attn.in_proj_weight",
        "encoder.encoder.0.layers.0.norm2.bias": "encoder.encoder.0.layers.0.norm2.bias",
        "encoder.lateral_convs.1.conv.weight": "encoder.lateral_convs.1.conv.weight",
        "encoder.fpn_blocks.1.bottlenecks.2.conv1.conv.weight": "encoder.fpn_blocks.1.bottlenecks.2.conv1.conv.weight",
        "encoder.downsample_convs.0.norm.running_mean": "encoder.downsample_convs.0.norm.running_mean",
        "encoder.pan_blocks.1.conv2.norm.weight": "encoder.pan_blocks.1.conv2.norm.weight",
        "decoder.input_proj.1.conv.weight": "decoder.input_proj.1.weight",
        "decoder.input_proj.2.norm.running_var": "decoder.input_proj.2.norm.running_var",
        "decoder.input_proj.0.norm.num_batches_tracked": "decoder.input_proj.0.norm.num_batches_tracked",
        f"decoder.decoder.layers.{last}.cross_attn.sampling_offsets.weight":
            f"decoder.layers.{last}.cross_attn.sampling_offsets.weight",
        "decoder.decoder.layers.0.self_attn.out_proj.bias": "decoder.layers.0.self_attn.out_proj.bias",
        "decoder.decoder.layers.0.norm3.weight": "decoder.layers.0.norm3.weight",
        "decoder.enc_output.0.weight": "decoder.query_selection.enc_output.0.weight",
        "decoder.enc_output.1.bias": "decoder.query_selection.enc_output.1.bias",
        "decoder.enc_score_head.bias": "decoder.query_selection.enc_score_head.bias",
        "decoder.enc_bbox_head.layers.2.weight": "decoder.query_selection.enc_bbox_head.layers.2.weight",
        "decoder.denoising_class_embed.weight": "denoising.class_embed.weight",
        "decoder.query_pos_head.layers.1.weight": "decoder.query_pos_head.layers.1.weight",
        f"decoder.dec_score_head.{last}.bias": f"decoder.dec_score_head.{last}.bias",
        "decoder.dec_bbox_head.0.layers.2.weight": "decoder.dec_bbox_head.0.layers.2.weight",
    }
    if bottleneck:
        pairs["backbone.res_layers.1.blocks.3.branch2c.conv.weight"] = "backbone.res3.3.conv3.weight"
        pairs["backbone.res_layers.2.blocks.5.branch2c.norm.bias"] = "backbone.res4.5.conv3.norm.bias"
    return pairs


# ---------------------------------------------------------------- RT-DETR
@pytest.mark.realdata
@pytest.mark.parametrize("name", list(MODELS))
def test_convert_rtdetr_and_load(name, tmp_path, capsys):
    ref = _reference_state_dict(name)
    ids = {k: int(v.flatten()[0]) for k, v in ref.items()}
    with_buffers = dict(ref, **{k: torch.zeros(s) for k, s in PRECOMPUTED.items()})
    other = _reference_state_dict(name, offset=100000)  # the non-EMA weights: must not be taken
    src, dst = tmp_path / "ref.pth", tmp_path / "out.pth"
    torch.save({"ema": {"module": with_buffers, "updates": 1000}, "model": other, "last_epoch": 71}, src)
    assert _convert_main(["rtdetr", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    assert f"converted {len(ref)} tensors (rtdetr, from ema.module" in out
    ckpt = torch.load(dst, weights_only=False)
    assert ckpt["matching_heuristics"] is False and "RT-DETR" in ckpt["__author__"]
    assert type(ckpt["model"]) is dict and not set(PRECOMPUTED) & set(ckpt["model"])
    model = _model(name)
    result = model.load_state_dict(ckpt["model"], strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    DetectionCheckpointer(model).load(str(dst))  # Detectron2 loads it as is
    sd = model.state_dict()
    landed = _ids(sd)
    # every tensor came from a different reference tensor, all from the EMA weights
    assert sorted(v for v in landed.values() if v is not None) == sorted(ids.values())
    for ref_key, key in _spot_pairs(name).items():
        assert landed[key] == ids[ref_key], (ref_key, key)
        assert sd[key].shape == ref[ref_key].shape and sd[key].dtype == ref[ref_key].dtype
    # the precomputed anchors / position embedding are sod2's own, non-persistent buffers
    assert not any("anchors" in k or "valid_mask" in k or "pos_embed" in k for k in sd)


@pytest.mark.realdata
@pytest.mark.parametrize("layout", ["ema", "model", "bare"])
def test_convert_rtdetr_layouts(layout, tmp_path, capsys):
    ref = _reference_state_dict("r18vd")
    ckpt = {"ema": {"module": ref, "updates": 3}, "model": ref, "bare": ref}[layout]
    if layout != "bare":
        ckpt = {layout: ckpt}
    src, dst = tmp_path / "ref.pth", tmp_path / "out.pth"
    torch.save(ckpt, src)
    assert _convert_main(["rtdetr", str(src), str(dst)]) == 0
    source = {"ema": "ema.module", "model": "model", "bare": "a bare state dict"}[layout]
    assert f"from {source}" in capsys.readouterr().out
    model = _model("r18vd")
    result = model.load_state_dict(torch.load(dst, weights_only=False)["model"], strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.state_dict()["denoising.class_embed.weight"], ref["decoder.denoising_class_embed.weight"])


@pytest.mark.realdata
def test_convert_rtdetr_errors(tmp_path, capsys):
    def fails(ckpt, *expected):
        src, dst = tmp_path / "in.pth", tmp_path / "o.pth"
        torch.save(ckpt, src)
        assert _convert_main(["rtdetr", str(src), str(dst)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        for text in expected:
            assert text in err, err
        assert not dst.exists()

    ref = _reference_state_dict("r18vd")
    fails({"model": {"backbone.backbone.stem.conv.conv.weight": torch.zeros(1), "head.stems.0.weight": torch.zeros(1)}},
          "not an RT-DETR state dict")
    for bad in ("decoder.extra_head.weight", "backbone.fc.weight", "encoder.input_proj.0.2.weight",
                "decoder.input_proj.0.act.weight", "decoder.anchors_2"):
        fails({"model": dict(ref, **{bad: torch.zeros(1)})}, f"unexpected key in the RT-DETR checkpoint: {bad}")
    fails({"model": dict(ref, **{"decoder.enc_score_head.note": "x"})}, "non-tensor entry", "decoder.enc_score_head.note")
    fails({"ema": {"updates": 3}, "model": ref}, "its 'ema' entry has no 'module' state dict")
    fails({"model": [1, 2]}, "its 'model' entry is not a state dict")
    fails(torch.zeros(3), "not an RT-DETR checkpoint: a Tensor")
    assert _convert_main(["rtdetr", str(tmp_path / "missing.pth"), str(tmp_path / "o.pth")]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err
    (tmp_path / "text.pth").write_text("not a checkpoint")
    assert _convert_main(["rtdetr", str(tmp_path / "text.pth"), str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConversionError, match="decoder.decoder.norm.weight"):
        convert_rtdetr_state_dict(dict(ref, **{"decoder.decoder.norm.weight": torch.zeros(1)}))


# ---------------------------------------------------------------- PResNet (ImageNet)
def _presnet_state_dict(name, with_num_batches_tracked=True):
    """A PResNet state dict as the Paddle-converted ImageNet files hold it: the backbone's keys
    without the 'backbone.' prefix (ids as in _reference_state_dict)."""
    return {k[len("backbone."):]: v for k, v in _reference_state_dict(name).items()
            if k.startswith("backbone.") and (with_num_batches_tracked or not k.endswith("num_batches_tracked"))}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(MODELS))
def test_convert_presnet_and_load(name, tmp_path, capsys):
    ref = _presnet_state_dict(name)
    src, dst = tmp_path / "ResNet_vd_pretrained_from_paddle.pth", tmp_path / "out.pth"
    torch.save(ref, src)
    assert _convert_main(["presnet", str(src), str(dst)]) == 0
    assert f"converted {len(ref)} tensors (presnet" in capsys.readouterr().out
    model = _model(name)
    ckpt = torch.load(dst, weights_only=False)
    assert "PResNet" in ckpt["__author__"] and all(k.startswith("backbone.") for k in ckpt["model"])
    result = model.load_state_dict(ckpt["model"], strict=False)
    assert not result.unexpected_keys
    # only the encoder and decoder (and the denoising embedding) start from their initialisation
    assert result.missing_keys and all(k.startswith(("encoder.", "decoder.", "denoising.")) for k in result.missing_keys)
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.")}
    assert set(backbone) == set(ckpt["model"])
    landed = _ids(backbone)
    for ref_key, key in _spot_pairs(name).items():
        if ref_key.startswith("backbone."):
            assert landed[key] == int(ref[ref_key[len("backbone."):]].flatten()[0]), (ref_key, key)


@pytest.mark.realdata
def test_convert_presnet_without_num_batches_tracked():
    """A file saved from a frozen-norm PResNet has no num_batches_tracked; R18/R34 train their
    BatchNorms in sod2 and load it all the same (PyTorch fills the counter in)."""
    converted = convert_presnet_state_dict(_presnet_state_dict("r18vd", with_num_batches_tracked=False))
    model = _model("r18vd")
    result = model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in converted.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.realdata
def test_convert_presnet_errors(tmp_path, capsys):
    def fails(ckpt, *expected):
        src, dst = tmp_path / "in.pth", tmp_path / "o.pth"
        torch.save(ckpt, src)
        assert _convert_main(["presnet", str(src), str(dst)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        for text in expected:
            assert text in err, err
        assert not dst.exists()

    ref = _presnet_state_dict("r50vd")
    fails(dict(ref, **{"fc.weight": torch.zeros(1000, 2048)}), "unexpected key in the PResNet checkpoint: fc.weight")
    fails(dict(ref, **{"res_layers.1.blocks.0.branch2d.conv.weight": torch.zeros(1)}), "res_layers.1.blocks.0.branch2d")
    fails({"backbone." + k: v for k, v in ref.items()}, "not a PResNet state dict", "use 'rtdetr'")
    fails({"ema": {"module": _reference_state_dict("r18vd")}}, "not a PResNet state dict",
          "looks like an RT-DETR checkpoint; use `convert_weights.py rtdetr`")
    fails([1, 2], "not a PResNet checkpoint: a list")


# ---------------------------------------------------------------- tools/check_rtdetr_reference.py
@pytest.mark.realdata
def test_check_rtdetr_reference_bad_arguments(tmp_path, capsys):
    """The reference check itself needs a clone of lyuwenyu/RT-DETR (not part of the
    repository); without one it fails with one line."""
    mod = tool_module("check_rtdetr_reference")
    assert mod.main(["--reference-repo", str(tmp_path), "--sizes", "r18"]) == 1
    err = capsys.readouterr().err
    assert "is not an RT-DETR clone" in err and len(err.strip().splitlines()) == 1
    assert mod.main(["--reference-repo", str(tmp_path), "--sizes", "r18", "r50", "--weights", "x.pth"]) == 1
    assert "--weights needs exactly one size" in capsys.readouterr().err
    assert set(mod.SIZES) == {"r18", "r34", "r50", "r50_m", "r101"}
    for ref_yml, config, fixture in mod.SIZES.values():
        assert (REPO / "configs" / config).is_file() and (REF_KEYS / fixture).is_file()
