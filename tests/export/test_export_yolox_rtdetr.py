"""ONNX export of YOLOX (plain, Foreground Probing) and RT-DETR (plain, Better Sampling):
``tools/export_model.py`` as a user runs it (its main()), the exported graph under ONNX Runtime's
CPU provider against the PyTorch model on the same images through the config's test mapper.

Weights: the config's random init, perturbed with a fixed seed and saved as the checkpoint the
tool loads (``train.init_checkpoint``); YOLOX's objectness / class predictors get larger weights
and a bias of -3 so that a few hundred locations pass the 0.01 score threshold with spread-out
scores. Images: uniform noise (no flat region, so no two locations see the same pixels and no
scores tie; flat regions -- the synthetic images' background, YOLOX's 114 letterbox padding --
give exactly equal scores whose order is arbitrary in any NMS/top-K implementation), sized so
that the resized image fills the network input (no padding).

Tolerances reached (float32, ONNX Runtime CPU vs PyTorch CPU): boxes within 1e-3 px (~1e-5 at
YOLOX, ~1e-4 at RT-DETR: different convolution / GEMM summation orders), scores within 1e-6;
asserted: 1e-2 px and 1e-4.
"""
import os

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from detectron2.config import instantiate  # noqa: E402

from sod2.engine.lazy_train import load_config  # noqa: E402
from sod2.export.metadata import ExportMetadata  # noqa: E402
from sod2.export.parity import pair_detections, random_model  # noqa: E402
from sod2.export.postprocess import to_original  # noqa: E402
from tests.modules import REPO, tool_module  # noqa: E402

FG = "configs/fgprobe/fgprobe_yolox_tiny_p2_synthetic.py"
FG_PLAIN = "configs/fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py"
BS = "configs/bsdetr/bsdetr_r18s_synthetic.py"
BS_PLAIN = "configs/bsdetr/bsdetr_plain_r18s_synthetic.py"
BOX_TOL, SCORE_TOL = 1e-2, 1e-4


def _perturbed_state(config: str, seed: int = 0) -> dict:
    return random_model(load_config(str(REPO / config), []), seed, noise=0.01, head_std=10.0).state_dict()


def _noise_image(folder, name, h, w, seed):
    import cv2

    path = os.path.join(folder, name)
    cv2.imwrite(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return {"file_name": path, "height": h, "width": w, "image_id": seed}


def _export(tmp, config, state, name, *extra, opts=()):
    ckpt = os.path.join(tmp, name + ".pth")
    torch.save({"model": state}, ckpt)
    out = os.path.join(tmp, name)
    rc = tool_module("export_model").main(["--config-file", str(REPO / config), "--output", out, *extra,
                                           "--opts", f"train.init_checkpoint={ckpt}", *opts])
    assert rc == 0
    cfg = load_config(str(REPO / config), [f"train.init_checkpoint={ckpt}", *opts])
    model = instantiate(cfg.model)
    assert not model.load_state_dict(state, strict=False).missing_keys
    return dict(dir=out, model=model.eval(), mapper=instantiate(cfg.dataloader.test.mapper),
                meta=ExportMetadata.from_json(os.path.join(out, "model.json")),
                session=ort.InferenceSession(os.path.join(out, "model.onnx"), providers=["CPUExecutionProvider"]))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("export"))
    fg = _perturbed_state(FG)
    plain = {k: v for k, v in fg.items() if not k.startswith("probe.")}
    bs = _perturbed_state(BS)
    images = [_noise_image(tmp, "a.png", 256, 256, 1), _noise_image(tmp, "b.png", 512, 512, 2)]
    return dict(
        tmp=tmp, images=images,
        fg=_export(tmp, FG, fg, "fg"),
        fg_plain=_export(tmp, FG_PLAIN, plain, "fg_plain"),
        fg_dyn=_export(tmp, FG, fg, "fg_dyn", "--dynamic", opts=["model.backbone.square_pad=0"]),
        bs=_export(tmp, BS, bs, "bs", "--dynamic"),
        bs_plain=_export(tmp, BS_PLAIN, bs, "bs_plain", "--dynamic"))



def _run(e, dicts):
    """ONNX Runtime on the test-mapper images of ``dicts`` (one batch: one size)."""
    batch = np.stack([d["image"].numpy().astype(np.float32) for d in dicts])
    out = e["session"].run(None, {"images": batch})
    meta = e["meta"]
    return out, to_original(*out, dicts, batch.shape[2:], family=meta.family, clip_boxes=meta.clip_boxes,
                            max_detections_per_image=meta.max_detections_per_image)


def _assert_same(onnx_inst, torch_inst):
    """Same count and labels, boxes within BOX_TOL, scores within SCORE_TOL, each image's
    detections by decreasing score. Scores closer than float32 noise (1e-8 apart among a few
    hundred detections) may come out in either order: detections are paired one to one
    (sod2.export.parity.pair_detections: same label, box and score within the tolerances),
    not position by position."""
    assert len(onnx_inst) == len(torch_inst) > 0
    assert onnx_inst.image_size == torch_inst.image_size
    assert (onnx_inst.scores[1:] <= onnx_inst.scores[:-1]).all()
    pairing = pair_detections(onnx_inst, torch_inst, BOX_TOL, SCORE_TOL)
    assert pairing.passed, pairing
    # position by position, apart from near-tied scores: the largest differences stay tiny
    same_place = (onnx_inst.pred_boxes.tensor - torch_inst.pred_boxes.tensor).abs().amax(1) <= BOX_TOL
    assert same_place.float().mean() > 0.9


def test_yolox_fgprobe_onnx_gives_the_models_detections(exports):
    e = exports["fg"]
    assert e["meta"].input_size == [256, 256] and not e["meta"].dynamic and e["meta"].channel_order == "BGR"
    for x in exports["images"]:  # 256x256 (ratio 1) and 512x512 (resize_ratio 0.5, boxes / 0.5)
        d = e["mapper"](dict(x))
        with torch.no_grad():
            ref = e["model"]([d])[0]["instances"]
        _, (inst,) = _run(e, [d])
        _assert_same(inst, ref)
        assert ref.image_size == (x["height"], x["width"])


def test_foreground_probe_is_in_the_graph(exports):
    """Same base weights: the FG-Probe graph's detections differ from the plain graph's, and each
    equals its own PyTorch model (the probe changes the objectness of its K tokens)."""
    d = exports["fg"]["mapper"](dict(exports["images"][0]))
    (_, s_fg, _, _), (fg,) = _run(exports["fg"], [d])
    (_, s_plain, _, _), (plain,) = _run(exports["fg_plain"], [d])
    with torch.no_grad():
        _assert_same(plain, exports["fg_plain"]["model"]([d])[0]["instances"])
        _assert_same(fg, exports["fg"]["model"]([d])[0]["instances"])
    assert len(s_fg) != len(s_plain) or np.abs(s_fg - s_plain).max() > 1e-3
    ops = [n.op_type for n in __import__("onnx").load(os.path.join(exports["fg"]["dir"], "model.onnx")).graph.node]
    ops_plain = [n.op_type for n in __import__("onnx").load(os.path.join(exports["fg_plain"]["dir"], "model.onnx")).graph.node]
    assert "NonMaxSuppression" in ops and "NonMaxSuppression" in ops_plain
    assert len(ops) > len(ops_plain) and "TopK" in ops  # the probe's token selection


@pytest.mark.parametrize("size", [(256, 256), (224, 320)])
def test_yolox_dynamic_export_at_two_sizes_and_batch(exports, size):
    """--dynamic (square padding off: model.backbone.square_pad=0): any H, W multiple of 32 and
    a batch of two, each image's detections equal to the model's on it alone."""
    e = exports["fg_dyn"]
    assert e["meta"].dynamic and e["meta"].input_size is None
    g = torch.Generator().manual_seed(size[1])
    dicts = [{"image": torch.randint(0, 256, (3, *size), generator=g).to(torch.float32)} for _ in range(2)]
    _, insts = _run(e, dicts)
    with torch.no_grad():
        for inst, d in zip(insts, dicts):
            _assert_same(inst, e["model"]([d])[0]["instances"])


@pytest.mark.parametrize("batch", [1, 2])
def test_rtdetr_dynamic_onnx_at_the_eval_size_gives_the_models_top_k(exports, batch):
    """sod2's RT-DETR configs precompute the encoder's position embedding and the anchors for
    eval_spatial_size (320x320), which the eager model uses at that size; the --dynamic graph
    computes them from the feature shapes (metadata: dynamic, no input_size) and gives the
    model's detections at that size, one image or a batch of two."""
    e = exports["bs_plain"]
    meta = e["meta"]
    assert meta.channel_order == "RGB" and meta.test_resize == {"kind": "fixed", "height": 320, "width": 320, "interp": 2}
    assert meta.dynamic_batch and meta.dynamic and meta.input_size is None
    import onnx

    dims = onnx.load(os.path.join(e["dir"], "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_param") for d in dims] == [True, False, True, True]
    assert tuple(e["model"].encoder._eval_pos_hw[2]) == (10, 10)  # the eager model's buffers: 320 / 32
    dicts = [e["mapper"](dict(x)) for x in exports["images"][:batch]]  # test mapper: 320x320
    _, insts = _run(e, dicts)
    with torch.no_grad():
        refs = [e["model"]([d])[0]["instances"] for d in dicts]
    for inst, ref, x in zip(insts, refs, exports["images"]):
        assert len(ref) == e["model"].num_top_queries and ref.image_size == (x["height"], x["width"])
        _assert_same(inst, ref)


@pytest.mark.parametrize("size", [(256, 320), (320, 256), (416, 288)])
def test_rtdetr_dynamic_onnx_at_other_sizes_gives_the_models_top_k(exports, size):
    """The same --dynamic export (traced at 320x320) at other sizes, in a batch of two: the
    model's detections at that size, where the eager model computes its embedding and anchors
    for the actual feature shapes (its buffers are for 320x320 only)."""
    e = exports["bs_plain"]
    g = torch.Generator().manual_seed(size[0] * 1000 + size[1])
    dicts = [{"image": torch.randint(0, 256, (3, *size), generator=g).to(torch.float32), "height": 2 * size[0],
              "width": 3 * size[1]} for _ in range(2)]
    _, insts = _run(e, dicts)
    with torch.no_grad():
        for inst, d in zip(insts, dicts):
            ref = e["model"]([d])[0]["instances"]
            assert len(ref) == e["model"].num_top_queries and ref.image_size == (2 * size[0], 3 * size[1])
            _assert_same(inst, ref)


def test_rtdetr_graph_computes_the_embedding_and_anchors_of_the_buffers(tmp_path):
    """At the eval size, the position embedding and anchors computed from symbolic feature
    shapes (the dynamic export's code path) equal the eager model's precomputed buffers: bit for
    bit when the exported program runs in PyTorch; under ONNX Runtime within 1.2e-7 (its Sin,
    Cos and Log kernels round differently from PyTorch's in the last bit: measured 6e-8 for the
    embedding, 1.2e-7 for the anchors). Against an independent float64 computation of the
    reference's formulas too (float32 rounding: 1.1e-7, 8.9e-7), at the eval size and another."""
    from sod2.modeling.transformer.hybrid_encoder import HybridEncoder
    from sod2.modeling.transformer.query_selection import QuerySelection

    enc = HybridEncoder(in_channels=[8, 8, 8], hidden_dim=32, dim_feedforward=64, nhead=4,
                        eval_spatial_size=(320, 256)).eval()
    qs = QuerySelection(hidden_dim=32, num_classes=3, num_queries=10, eval_spatial_size=(320, 256)).eval()

    class Shapes(torch.nn.Module):
        def forward(self, x):  # x (1, 1, H, W): only its shape is used
            h, w = x.shape[2], x.shape[3]
            anchors, valid = qs.get_anchors([(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)], x.device)
            return enc.position_embedding(2, h // 32, w // 32, x.device), anchors, valid

    x = torch.zeros(1, 1, 320, 256)
    dims = {2: 32 * torch.export.Dim("h", min=1, max=64), 3: 32 * torch.export.Dim("w", min=1, max=64)}
    program = torch.export.export(Shapes(), (x,), dynamic_shapes=(dims,), strict=False)
    pe, anchors, valid = program.module()(x)
    assert torch.equal(pe, enc.pos_embed2) and torch.equal(anchors, qs.anchors) and torch.equal(valid, qs.valid_mask)
    path = str(tmp_path / "shapes.onnx")
    torch.onnx.export(program, (x,), dynamo=True, opset_version=19, input_names=["x"], verbose=False).save(path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def float64(h, w):  # the reference's formulas, in float64 (a = t // (h/32), b = t % (h/32))
        hs, ws = h // 32, w // 32
        t = np.arange(hs * ws)
        omega = 1.0 / 10000.0 ** (np.arange(8) / 8)
        a, b = (t // hs)[:, None] * omega, (t % hs)[:, None] * omega
        pe = np.concatenate([np.sin(a), np.cos(a), np.sin(b), np.cos(b)], axis=1)
        anchors = []
        for lvl, s in enumerate((8, 16, 32)):
            ys, xs = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
            c = np.stack([(xs + 0.5) / (w // s), (ys + 0.5) / (h // s)], -1).reshape(-1, 2)
            anchors.append(np.concatenate([c, np.full_like(c, 0.05 * 2 ** lvl)], 1))
        a = np.concatenate(anchors)
        ok = ((a > 0.01) & (a < 0.99)).all(1)
        return pe, np.where(ok[:, None], np.log(a / (1 - a)), np.inf), ok

    for h, w in [(320, 256), (224, 416)]:
        pe, anchors, valid = sess.run(None, {"x": np.zeros((1, 1, h, w), np.float32)})
        pe64, anchors64, valid64 = float64(h, w)
        assert np.array_equal(valid[0, :, 0], valid64) and np.array_equal(np.isinf(anchors[0]), np.isinf(anchors64))
        fin = np.isfinite(anchors64)
        # float32 rounding: of sin/cos (~6e-8); of the centre before the logit, whose slope
        # 1 / (a (1 - a)) is ~100 at the validity margin (~9e-7)
        assert np.abs(pe[0] - pe64).max() < 2e-7 and np.abs(anchors[0][fin] - anchors64[fin]).max() < 2e-6
        if (h, w) == (320, 256):
            fin = np.isfinite(qs.anchors.numpy())
            assert np.abs(pe - enc.pos_embed2.numpy()).max() <= 1.2e-7
            assert np.abs(anchors[fin] - qs.anchors.numpy()[fin]).max() <= 2.4e-7


def test_better_sampling_exports_the_plain_rtdetr_graph(exports):
    import onnx

    graphs = [onnx.load(os.path.join(exports[k]["dir"], "model.onnx")).graph for k in ("bs", "bs_plain")]
    assert [n.op_type for n in graphs[0].node] == [n.op_type for n in graphs[1].node]
    d = exports["bs"]["mapper"](dict(exports["images"][0]))
    (a, _), (b, _) = _run(exports["bs"], [d]), _run(exports["bs_plain"], [d])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_fixed_size_metadata_and_tool_refusals(exports, tmp_path, capsys):
    tool = tool_module("export_model")
    out = str(tmp_path / "out")
    # no checkpoint
    assert tool.main(["--config-file", str(REPO / FG), "--output", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.init_checkpoint" in err[0] and "--allow-random-weights" in err[0]
    # weights of another model (RT-DETR's for a YOLOX): refused, nothing written
    ckpt = os.path.join(exports["tmp"], "bs.pth")
    assert tool.main(["--config-file", str(REPO / FG), "--output", out, "--opts",
                      f"train.init_checkpoint={ckpt}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "bs.pth" in err[0]
    assert not os.path.exists(out) or os.listdir(out) == []
    # an unsupported format for the family (the R-CNN graphs are ONNX only)
    assert tool.main(["--config-file", str(REPO / "configs/baselines/faster_rcnn_R18s_fpn_synthetic.py"),
                      "--output", out, "--format", "torchscript", "--allow-random-weights"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GeneralizedRCNN" in err[0] and "--format onnx" in err[0]
    assert not os.path.exists(os.path.join(out, "model.pt"))


@pytest.mark.parametrize("key,config", [("fg", FG), ("bs_plain", BS_PLAIN)])
def test_torchscript_trace_gives_the_models_detections(exports, key, config):
    """--format torchscript (torch.jit.trace of the same graph, fixed size): run on images other
    than the tracing sample (the detection count is not frozen at the sample's)."""
    out = os.path.join(exports["tmp"], key + "_ts")
    ckpt = os.path.join(exports["tmp"], key + ".pth")
    assert tool_module("export_model").main(["--config-file", str(REPO / config), "--format", "torchscript",
                                             "--output", out, "--opts", f"train.init_checkpoint={ckpt}"]) == 0
    meta = ExportMetadata.from_json(os.path.join(out, "model.json"))
    assert meta.format == "torchscript" and meta.exporter == "torchscript" and meta.model_file == "model.pt"
    traced = torch.jit.load(os.path.join(out, "model.pt"))
    e = exports[key]
    for x in exports["images"]:
        d = e["mapper"](dict(x))
        with torch.no_grad():
            outs = traced(d["image"].to(torch.float32)[None])
            ref = e["model"]([d])[0]["instances"]
        (inst,) = to_original(*outs, [d], tuple(d["image"].shape[1:]), family=meta.family,
                              clip_boxes=meta.clip_boxes)
        _assert_same(inst, ref)


def test_sample_image_sets_the_fixed_input_size(exports, tmp_path):
    """--sample-image goes through the test mapper: a 200x300 image at YOLOX's 256 test size is
    resized by r = min(256/200, 256/300) to int(200 r) x int(300 r) = 170 x 256 (official preproc),
    the size a fixed export then takes."""
    x = _noise_image(str(tmp_path), "s.png", 200, 300, 5)
    out = str(tmp_path / "ts")
    assert tool_module("export_model").main(["--config-file", str(REPO / FG), "--format", "torchscript",
                                             "--output", out, "--sample-image", x["file_name"],
                                             "--allow-random-weights"]) == 0
    meta = ExportMetadata.from_json(os.path.join(out, "model.json"))
    assert meta.input_size == [170, 256] and meta.checkpoint is None
    assert meta.test_resize == {"kind": "yolox", "size": [256, 256], "pre_resize": True}


def test_export_tool_refuses_a_graph_whose_dynamic_axes_were_fixed(exports, tmp_path, monkeypatch):
    """The dynamo exporter can fall back to the sample's sizes when the model's code fixes them
    (sod2's RT-DETR did, through int() of its feature shapes): --dynamic then fails and leaves
    no model.onnx behind instead of writing a fixed-size graph with metadata saying dynamic."""
    import onnx
    from onnx import TensorProto, helper

    import sod2.export.onnx as sod2_onnx

    def fixed_export(graph, sample, path, dynamic=False, dynamic_batch=False, opset=19):
        x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [2, 3, 256, 256])
        y = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [2, 3, 256, 256])
        onnx.save(helper.make_model(helper.make_graph([helper.make_node("Identity", ["images"], ["boxes"])],
                                                      "g", [x], [y])), path)

    monkeypatch.setattr(sod2_onnx, "export_onnx", fixed_export)
    out = tmp_path / "out"
    ckpt = os.path.join(exports["tmp"], "fg.pth")
    with pytest.raises(RuntimeError, match="fixed batch=2, height=256, width=256 of the dynamic input"):
        tool_module("export_model").main(["--config-file", str(REPO / FG), "--output", str(out), "--dynamic",
                                          "--opts", f"train.init_checkpoint={ckpt}", "model.backbone.square_pad=0"])
    assert not (out / "model.onnx").exists() and not (out / "model.json").exists()
