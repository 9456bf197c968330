"""sod2.inference.OnnxModel: an exported graph (the export contract of sod2/export/metadata.py)
run by ONNX Runtime with a Detectron2 model's call, through the demo, evaluation and slicing.

The graphs here are tiny hand-made ones with the contract's inputs and outputs whose detections
follow a fixed pattern of the input (boxes at fixed fractions of the input size, scores from the
mean of the first channel), so every expected value is computed by hand.
"""
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from sod2.errors import UserError  # noqa: E402
from sod2.export.metadata import ExportMetadata  # noqa: E402
from sod2.inference import OnnxModel, SlicedInference  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# the toy's two detections per image, as fractions of the input (w, h, w, h); class 0 then 1
FRACTIONS = np.array([[0.1, 0.2, 0.5, 0.6], [0.5, 0.25, 1.0, 1.0]])


class Toy(nn.Module):
    """(B, 3, H, W) -> the contract's outputs: per image, box FRACTIONS * (W, H, W, H), scores
    s = mean(channel 0) / 255 and s / 2, classes 0 and 1; detections with a score <= 0.05 dropped
    (an image with a dark first channel has none)."""

    def forward(self, images):
        B, _, H, W = images.shape
        s = images[:, 0].mean(dim=(1, 2)) / 255.0
        scale = torch.stack([torch.tensor(W), torch.tensor(H), torch.tensor(W), torch.tensor(H)]).float()
        boxes = (torch.tensor(FRACTIONS, dtype=torch.float32) * scale).unsqueeze(0).expand(B, 2, 4).reshape(-1, 4)
        scores = torch.stack([s, s * 0.5], 1).reshape(-1)
        classes = torch.tensor([0, 1]).repeat(B)
        index = torch.arange(B).unsqueeze(1).expand(B, 2).reshape(-1)
        keep = scores > 0.05
        return boxes[keep], scores[keep], classes[keep], index[keep]


def _metadata(name, **kw):
    base = dict(format="onnx", model_file=name + ".onnx", family="rcnn", meta_architecture="Toy",
                channel_order="BGR", pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0],
                test_resize={"kind": "none"}, input_size=None, dynamic=True, dynamic_batch=True,
                class_names=["disc", "cross", "ring"], score_threshold=0.05, max_detections_per_image=100,
                clip_boxes=True, opset=17, sod2_version="test", torch_version=torch.__version__,
                exporter="torchscript")
    base.update(kw)
    return ExportMetadata(**base)


def export_toy(folder, name="toy", size=None, **meta):
    """Write ``<folder>/<name>.onnx`` (dynamic, or fixed at ``size`` (H, W)) and its JSON."""
    import warnings

    path = os.path.join(folder, name + ".onnx")
    h, w = size or (40, 60)
    dynamic = {"images": {0: "batch", 2: "height", 3: "width"}} if size is None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Toy(), (torch.zeros(2, 3, h, w),), path, input_names=["images"],
                          output_names=["boxes", "scores", "classes", "batch_index"], dynamic_axes=dynamic,
                          dynamo=False, opset_version=17)
    fixed = dict(input_size=[h, w], dynamic=False, dynamic_batch=False) if size is not None else {}
    _metadata(name, **{**fixed, **meta}).to_json(os.path.join(folder, name + ".json"))
    return path


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return export_toy(str(tmp_path_factory.mktemp("onnx")))


def _image(value, h=40, w=60, dtype=torch.uint8):
    im = torch.zeros(3, h, w, dtype=dtype)
    im[0] = value
    return im


def _boxes(inst):
    return inst.pred_boxes.tensor.numpy().astype(np.float64)


def test_outputs_in_the_original_size(toy):
    out = OnnxModel(toy)([{"image": _image(204), "height": 80, "width": 120}])
    inst = out[0]["instances"]
    assert inst.image_size == (80, 120)
    # input boxes FRACTIONS * (60, 40, 60, 40) = (6, 8, 30, 24), (30, 10, 60, 40); x2 to 120 x 80
    np.testing.assert_allclose(_boxes(inst), [[12, 16, 60, 48], [60, 20, 120, 80]], atol=1e-4)
    np.testing.assert_allclose(inst.scores.numpy(), [0.8, 0.4], atol=1e-6)
    assert inst.pred_classes.tolist() == [0, 1] and inst.pred_classes.dtype == torch.int64
    # without height/width: the input size
    inst = OnnxModel(toy)([{"image": _image(204).float()}])[0]["instances"]
    assert inst.image_size == (40, 60)
    np.testing.assert_allclose(_boxes(inst), [[6, 8, 30, 24], [30, 10, 60, 40]], atol=1e-4)


def test_yolox_resize_ratio_divides_and_unclipped(tmp_path):
    path = export_toy(str(tmp_path), family="yolox", clip_boxes=False)
    inst = OnnxModel(path)([{"image": _image(204), "height": 90, "width": 140, "resize_ratio": 0.4}])[0]["instances"]
    assert inst.image_size == (90, 140)
    # (6, 8, 30, 24) / 0.4 and (30, 10, 60, 40) / 0.4: x2 = 150 > 140 kept (not clipped)
    np.testing.assert_allclose(_boxes(inst), [[15, 20, 75, 60], [75, 25, 150, 100]], atol=1e-4)


class _Counting:
    def __init__(self, session):
        self.session, self.batches = session, []

    def run(self, names, feed):
        self.batches.append(next(iter(feed.values())).shape[0])
        return self.session.run(names, feed)


@pytest.mark.parametrize("dynamic_batch", [True, False])
def test_batches_split_by_batch_index_and_empty_outputs(tmp_path, dynamic_batch):
    model = OnnxModel(export_toy(str(tmp_path), dynamic_batch=dynamic_batch))
    model._session = counting = _Counting(model._session)
    inputs = [{"image": _image(204)}, {"image": _image(0)}, {"image": _image(102)},
              {"image": _image(255, h=20, w=30)}]
    out = [o["instances"] for o in model(inputs)]
    # one run per image size with a dynamic batch, else one per image
    assert counting.batches == ([3, 1] if dynamic_batch else [1, 1, 1, 1])
    np.testing.assert_allclose(out[0].scores.numpy(), [0.8, 0.4], atol=1e-6)
    assert len(out[1]) == 0 and out[1].image_size == (40, 60) and _boxes(out[1]).shape == (0, 4)
    np.testing.assert_allclose(out[2].scores.numpy(), [0.4, 0.2], atol=1e-6)
    np.testing.assert_allclose(out[3].scores.numpy(), [1.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(_boxes(out[3]), [[3, 4, 15, 12], [15, 5, 30, 20]], atol=1e-4)


def test_a_detectron2_models_face(toy):
    model = OnnxModel(toy)
    assert model.training is False and model.eval() is model and model.to("cpu") is model
    assert model.device == torch.device("cpu") and model.input_format == "BGR"
    assert list(model.parameters()) == []
    with pytest.raises(UserError, match="runs inference only"):
        model.train()
    with pytest.raises(UserError, match="providers"):
        model.to("cuda")


def _refused(match, *args, **kw):
    with pytest.raises(UserError, match=match) as e:
        OnnxModel(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_refusals_one_line(tmp_path, toy):
    fixed = export_toy(str(tmp_path), "fixed", size=(40, 60))
    with pytest.raises(UserError, match=r"exported for 40x60 .* got 30x50") as e:
        OnnxModel(fixed)([{"image": _image(204, h=30, w=50)}])
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="has 1 channel"):
        OnnxModel(toy)([{"image": torch.zeros(1, 40, 60)}])
    with pytest.raises(UserError, match="NaN or infinite"):
        OnnxModel(toy)([{"image": torch.full((3, 40, 60), float("nan"))}])
    # damaged: the file cut in half
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(Path(toy).read_bytes()[:2000])
    (tmp_path / "damaged.json").write_text(Path(toy).with_suffix(".json").read_text())
    _refused("ONNX Runtime cannot load it", str(damaged))
    # no metadata next to it
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(Path(toy).read_bytes())
    _refused(r"lone.json is missing", str(lone))
    _refused("no such ONNX file", str(tmp_path / "nope.onnx"))
    # metadata of another graph: other input name; a fixed size the graph does not have
    _refused(r"does not match its metadata .*inputs \['images'\]", toy, metadata=_metadata("toy", input_name="pixels"))
    _refused(r"does not match its metadata .*\(H, W\) = \(40, 60\).*\(32, 32\)", fixed,
             metadata=_metadata("fixed", input_size=[32, 32], dynamic=False))
    _refused(r"the metadata says dynamic", fixed, metadata=_metadata("fixed"))


def test_sliced_inference_takes_it_unchanged(toy):
    """6 slices of 40 x 40 (overlap 0) over an 80 x 120 image: each slice's toy detections
    (4, 8, 20, 24), (20, 10, 40, 40) at the slice's offset, none overlapping, all kept."""
    sliced = SlicedInference(OnnxModel(toy), slice_size=40, overlap=0.0).eval()
    inst = sliced([{"image": _image(204, h=80, w=120)}])[0]["instances"]
    expected = [[x + a, y + b, x + c, y + d] for x in (0, 40, 80) for y in (0, 40)
                for a, b, c, d in ([4, 8, 20, 24], [20, 10, 40, 40])]
    got = sorted(map(tuple, np.round(_boxes(inst), 3).tolist()))
    assert got == sorted(map(tuple, np.asarray(expected, float).tolist()))
    np.testing.assert_allclose(np.sort(inst.scores.numpy()), [0.4] * 6 + [0.8] * 6, atol=1e-6)



def test_guided_slicing_with_an_exported_model(toy):
    """Guided slicing reads an exported model's full-image detections (its graph outputs only
    detections, so "auto" is the detections map; "model" is refused in one line). The toy's
    full-image boxes on 80 x 120: (12, 16, 60, 48) score 0.8 and (60, 20, 120, 80) score 0.4;
    at threshold 0.5 only the 40 px slices the first one touches run (x < 64), at 0.3 all six."""
    from sod2.errors import UserError
    from sod2.inference.guided import GuidedSlicing

    image = [{"image": _image(204, h=80, w=120)}]
    out = SlicedInference(OnnxModel(toy), slice_size=40, overlap=0.0,
                          guided=GuidedSlicing(threshold=0.5, margin=0, cell=8)).eval()(image)[0]
    sel = out["slicing"]
    assert sel.foreground.source == "detections"
    assert sorted(sel.windows[sel.ran].tolist()) == [[0, 0, 40, 40], [0, 40, 40, 80], [40, 0, 80, 40], [40, 40, 80, 80]]
    assert len(out["instances"]) == 2 + 2 * 4  # the full image's two, two per slice that ran
    every = SlicedInference(OnnxModel(toy), slice_size=40, overlap=0.0,
                            guided=GuidedSlicing(threshold=0.3, margin=0, cell=8)).eval()(image)[0]
    assert every["slicing"].ran.all()
    with pytest.raises(UserError, match="OnnxModel.*source='detections'"):
        SlicedInference(OnnxModel(toy), slice_size=40, guided=GuidedSlicing(source="model")).eval()(image)

# ------------------------------------------------------------------------------ the demo
CONFIG = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")


def _demo_main(*args):
    from tests.modules import tool_module

    return tool_module("demo").main([str(a) for a in args])


def test_demo_predictor_feeds_the_exported_channel_order(toy):
    """The demo reads RGB files and gives the exported model its channel order (BGR here): the
    toy scores channel 0 (blue), so a blue image has detections and a red one none."""
    from tests.modules import tool_module

    pred = tool_module("demo").Predictor(None, onnx=toy)
    blue = np.zeros((40, 60, 3), np.uint8)
    blue[..., 2] = 204
    inst = pred(blue)
    np.testing.assert_allclose(inst.scores.numpy(), [0.8, 0.4], atol=1e-6)
    np.testing.assert_allclose(_boxes(inst), [[6, 8, 30, 24], [30, 10, 60, 40]], atol=1e-4)
    assert len(pred(blue[..., ::-1].copy())) == 0


def test_demo_without_config_resizes_as_the_export_and_divides_by_yolox_ratio(tmp_path):
    """No --config-file: the metadata's test resize (YOLOX's, to 30 x 30) and, as the test
    mapper, its single ratio r: a 45 x 61 image becomes int(45 r) x int(61 r) = 22 x 30 and the
    boxes are divided by r (a per-axis rescale would give y * 45/22, not y / r)."""
    from tests.modules import tool_module

    path = export_toy(str(tmp_path), family="yolox", clip_boxes=False,
                      test_resize={"kind": "yolox", "size": [30, 30], "pre_resize": True})
    pred = tool_module("demo").Predictor(None, onnx=path)
    rgb = np.zeros((45, 61, 3), np.uint8)
    rgb[..., 2] = 204
    inst = pred(rgb)
    r = min(30 / 45, 30 / 61)
    assert pred._input_hw == (int(45 * r), int(61 * r)) == (22, 30)
    np.testing.assert_allclose(_boxes(inst), FRACTIONS * [30, 22, 30, 22] / r, rtol=1e-5)
    assert inst.image_size == (45, 61)


def test_demo_draws_with_onnx(tmp_path, toy, capsys):
    import cv2

    img = np.zeros((40, 60, 3), np.uint8)
    img[..., 0] = 230  # BGR file: blue
    cv2.imwrite(str(tmp_path / "a.png"), img)
    written = _demo_main("--onnx", toy, "--input", tmp_path / "a.png", "--output", tmp_path / "plain",
                         "--no-labels", "--confidence-threshold", "0.5")
    drawn = cv2.imread(written[0])
    assert drawn.shape == img.shape and (drawn != img).any(axis=2).sum() > 20  # the 0.9 box is drawn
    # the config's test mapper (synthetic: no resize) and --slice: 2 slices of 40 px
    written = _demo_main("--config-file", CONFIG, "--onnx", toy, "--input", tmp_path / "a.png",
                         "--output", tmp_path / "sliced", "--slice", "40", "--overlap", "0", "--show-slices")
    assert cv2.imread(written[0]).shape == img.shape


def test_demo_refuses_an_export_of_another_model(tmp_path, toy, capsys):
    other = export_toy(str(tmp_path), "two", class_names=["a", "b"])
    (tmp_path / "in").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((40, 60, 3), np.uint8))
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(Path(toy).read_bytes()[:1500])
    (tmp_path / "damaged.json").write_text(Path(toy).with_suffix(".json").read_text())
    for args, expected in [
        (("--config-file", CONFIG, "--onnx", other), "is a model of 2 classes, --config-file has 3"),
        (("--onnx", damaged), "damaged.onnx: ONNX Runtime cannot load it"),
        (("--onnx", str(tmp_path / "missing.onnx")), "missing.onnx: no such ONNX file"),
        (("--onnx", toy, "--show-foreground"), "an exported model (--onnx) has none"),
    ]:
        with pytest.raises(SystemExit) as e:
            _demo_main(*args, "--input", tmp_path / "in", "--output", tmp_path / "out")
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------- evaluation
def _eval_tool(*argv):
    """tools/lazyconfig_train_net.py --eval-only --onnx ... in this process: (status, results)."""
    from detectron2.engine import default_argument_parser

    from sod2.engine.lazy_train import run_tool

    parser = default_argument_parser()
    parser.add_argument("--onnx")
    return run_tool(parser.parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def val8(synthetic_dataset):
    """The first 8 images of sod2_synthetic_val, registered as their own dataset."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "sod2_onnx_test_val8"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("sod2_synthetic_val")[:8])
        src = MetadataCatalog.get("sod2_synthetic_val")
        MetadataCatalog.get(name).set(**{k: v for k, v in src.as_dict().items() if k != "name"})
    return name


def test_eval_only_onnx_refusals(tmp_path, toy, capsys, val8):
    other = export_toy(str(tmp_path), "rgb", channel_order="RGB")
    common = ["--config-file", CONFIG, f"dataloader.test.dataset.names={val8}", f"train.output_dir={tmp_path / 'o'}"]
    for argv, expected in [
        (["--onnx", toy, *common], "add --eval-only"),
        (["--eval-only", "--onnx", other, *common], "takes RGB images, the test mapper of --config-file gives BGR"),
        (["--eval-only", "--onnx", tmp_path / "none.onnx", *common], "none.onnx: no such ONNX file"),
    ]:
        assert _eval_tool(*argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err


def test_eval_only_onnx_evaluates_the_exported_detections(tmp_path, toy, val8):
    """--eval-only --onnx on 8 synthetic images: the evaluator (ScaleBucketEvaluator, the config's)
    scores exactly the toy's detections computed by hand from each image file."""
    import json

    import cv2
    from detectron2.data import DatasetCatalog, MetadataCatalog

    out = tmp_path / "eval"
    assert _eval_tool("--config-file", CONFIG, "--eval-only", "--onnx", toy, f"dataloader.test.dataset.names={val8}",
                      f"train.output_dir={out}", "dataloader.test.num_workers=0") == 0
    to_id = {v: k for k, v in MetadataCatalog.get(val8).thing_dataset_id_to_contiguous_id.items()}
    expected = []
    for d in DatasetCatalog.get(val8):
        bgr = cv2.imread(d["file_name"])
        s = bgr[..., 0].astype(np.float64).mean() / 255.0
        H, W = bgr.shape[:2]
        for k, (score, f) in enumerate(zip((s, s / 2), FRACTIONS)):
            if score > 0.05:
                x0, y0, x1, y1 = f * [W, H, W, H]
                expected.append((d["image_id"], to_id[k], (x0, y0, x1 - x0, y1 - y0), score))
    got = json.loads((out / f"{val8}_results.json").read_text())
    assert len(got) == len(expected) > 8
    got = sorted((r["image_id"], r["category_id"], tuple(r["bbox"]), r["score"]) for r in got)
    for g, e in zip(got, sorted(expected)):
        assert g[:2] == e[:2]
        np.testing.assert_allclose(g[2], e[2], atol=1e-3)
        assert abs(g[3] - e[3]) < 1e-5
    metrics = json.loads((out / f"{val8}_metrics.json").read_text())
    assert metrics["protocol"] == "aitod"


def test_eval_only_onnx_with_a_sliced_config(tmp_path, toy, val8):
    """A config with a slicing block (+slicing.size=128): the exported model is sliced as the
    config's model would be; 4 slices per 256 px image, each with the toy's detections at its
    offset, scored by the slice's own first channel (disjoint slices: nothing merged away)."""
    import json

    import cv2
    from detectron2.data import DatasetCatalog

    out = tmp_path / "eval"
    assert _eval_tool("--config-file", CONFIG, "--eval-only", "--onnx", toy, f"dataloader.test.dataset.names={val8}",
                      f"train.output_dir={out}", "dataloader.test.num_workers=0", "+slicing.size=128",
                      "+slicing.overlap=0.0") == 0
    expected = []
    for d in DatasetCatalog.get(val8)[:8]:
        bgr = cv2.imread(d["file_name"])
        assert bgr.shape[:2] == (256, 256)
        for y in (0, 128):
            for x in (0, 128):
                s = bgr[y:y + 128, x:x + 128, 0].astype(np.float64).mean() / 255.0
                for score, f in zip((s, s / 2), FRACTIONS):
                    if score > 0.05:
                        x0, y0, x1, y1 = f * 128 + [x, y, x, y]
                        expected.append((d["image_id"], x0, y0, x1 - x0, y1 - y0, score))
    got = sorted((r["image_id"], *r["bbox"], r["score"]) for r in
                 json.loads((out / f"{val8}_results.json").read_text()))
    assert len(got) == len(expected) > 8
    np.testing.assert_allclose(np.array(got, float), np.array(sorted(expected), float), atol=1e-3)


def test_without_onnxruntime_sod2_imports_and_refuses_in_one_line(toy):
    import subprocess

    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import sod2.inference as i\n"
            "from sod2.errors import UserError\n"
            f"try:\n    i.OnnxModel({toy!r})\nexcept UserError as e:\n    print(e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "running an exported ONNX model needs onnxruntime: pip install -e .[export]"


# ------------------------------------------------- an exported sod2 model: the same evaluation
YOLOX_CONFIG = str(REPO / "configs" / "fgprobe" / "fgprobe_plain_yolox_tiny_p2_synthetic.py")


def test_exported_yolox_evaluates_as_the_pytorch_model(tmp_path, val8):
    """YOLOX-Tiny (P2, synthetic config), seeded weights perturbed so that it detects (obj and
    cls biases raised: 1500 detections per image, the AI-TOD protocol's cap), exported by
    tools/export_model.py and evaluated with --eval-only --onnx on 8 sod2_synthetic_val images:
    the same detections (count, classes; boxes within 1e-2 px, scores within 1e-4) and the same
    metrics as --eval-only with the checkpoint."""
    import json

    from detectron2.config import LazyConfig, instantiate

    from tests.modules import tool_module

    cfg = LazyConfig.load(YOLOX_CONFIG)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        for conv in model.head.obj_preds.values():
            conv.bias.fill_(1.0)
        for conv in model.head.cls_preds.values():
            conv.bias.fill_(0.0)
    ckpt = tmp_path / "yolox.pth"
    torch.save({"model": model.state_dict()}, ckpt)
    tool_module("export_model").main(["--config-file", YOLOX_CONFIG, "--format", "onnx", "--output",
                                      str(tmp_path / "export"), "--opts", f"train.init_checkpoint={ckpt}",
                                      "train.device=cpu"])
    (onnx_file,) = (tmp_path / "export").glob("*.onnx")
    common = ["--config-file", YOLOX_CONFIG, "--eval-only", f"dataloader.test.dataset.names={val8}",
              "dataloader.test.num_workers=0", "train.device=cpu"]
    assert _eval_tool(*common, f"train.init_checkpoint={ckpt}", f"train.output_dir={tmp_path / 'pt'}") == 0
    assert _eval_tool("--onnx", onnx_file, *common, f"train.output_dir={tmp_path / 'onnx'}") == 0

    def read(which):
        res = json.loads((tmp_path / which / f"{val8}_results.json").read_text())
        met = json.loads((tmp_path / which / f"{val8}_metrics.json").read_text())["metrics"]
        return sorted((r["image_id"], r["category_id"], r["score"], *r["bbox"]) for r in res), met

    (pt, pt_metrics), (ox, ox_metrics) = read("pt"), read("onnx")
    assert len(pt) == len(ox) == 8 * 1500
    pt, ox = np.array(pt, float), np.array(ox, float)
    assert (pt[:, :2] == ox[:, :2]).all()  # per image and class the same count
    for key in np.unique(pt[:, :2], axis=0):  # each detection has a twin on the other side
        a, b = (x[(x[:, :2] == key).all(1)] for x in (pt, ox))
        close = (np.abs(a[:, None, 2] - b[None, :, 2]) <= 1e-4) & \
            (np.abs(a[:, None, 3:] - b[None, :, 3:]).max(-1) <= 1e-2)
        assert close.any(1).all() and close.any(0).all(), key
    assert pt_metrics["AR@1500"] > 0.05  # the seeded model finds objects: the comparison means something
    for k, v in pt_metrics.items():
        if isinstance(v, float):
            assert abs(ox_metrics[k] - v) <= 1e-4, (k, v, ox_metrics[k])
