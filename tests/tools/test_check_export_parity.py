"""``tools/check_export_parity.py`` as a user runs it (its main()) and ``tools/gpu_check.sh``'s
parity step on a machine without CUDA / without onnxruntime-gpu.

The parity numbers are checked against an independent run: the PyTorch model rebuilt from the
checkpoint the tool wrote, on the noise image the tool wrote, through the config's test mapper,
and ONNX Runtime's session on the exported file, compared here without sod2.export.parity."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tests.modules import REPO, tool_module  # noqa: E402

CONFIG = "configs/baselines/retinanet_R18s_fpn_synthetic.py"


def _row(text):
    rows = [line for line in text.splitlines() if line.startswith("| retinanet_R18s_fpn_synthetic |")]
    assert len(rows) == 1, text
    return [c.strip() for c in rows[0].strip("|").split("|")]


@pytest.fixture(scope="module")
def passed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = tool_module("check_export_parity").main([
            "--config-file", str(REPO / CONFIG), "--image-size", "150", "198", "--images", "1",
            "--providers", "CPUExecutionProvider", "--workdir", str(tmp), "--output", str(tmp / "report.md")])
    return rc, out.getvalue(), tmp


def test_tool_reports_the_measured_parity(passed_run):
    rc, stdout, tmp = passed_run
    assert rc == 0, stdout
    row = _row(stdout)
    assert row[1:6] == ["retinanet", "CPUExecutionProvider", "torch cpu", "150x198", "1"]
    n_torch, n_onnx = (int(v) for v in row[6].split("/"))
    assert row[7] == "0" and row[-1] == "PASS" and n_torch == n_onnx > 20
    box, score = float(row[8]), float(row[9])
    assert 0 < box <= 1e-2 and score <= 1e-4  # a real float32 difference, within the tolerances
    assert (tmp / "report.md").read_text().strip() == stdout.strip()

    # independently: the checkpoint and image the tool wrote, the model and ONNX Runtime here
    from detectron2.config import instantiate

    from sod2.engine.checkpoint import load_for_inference
    from sod2.engine.lazy_train import load_config

    work = tmp / "retinanet_R18s_fpn_synthetic"
    (image,) = (work / "images").iterdir()
    cfg = load_config(str(REPO / CONFIG), [])
    model = instantiate(cfg.model)
    load_for_inference(model, str(work / "retinanet_R18s_fpn_synthetic_random.pth"))
    d = instantiate(cfg.dataloader.test.mapper)({"file_name": str(image), "height": 150, "width": 198, "image_id": 0})
    with torch.no_grad():
        ref = model.eval()([d])[0]["instances"]
    sess = ort.InferenceSession(str(work / "retinanet_R18s_fpn_synthetic" / "model.onnx"),
                                providers=["CPUExecutionProvider"])
    boxes, scores, classes, _ = sess.run(None, {"images": d["image"][None].numpy().astype(np.float32)})
    # the input is the image's own size (no test resize), so the graph's boxes are final up to
    # clipping, which drops the boxes left empty
    clipped = np.clip(boxes, 0, [198, 150, 198, 150])
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    clipped, scores, classes = clipped[keep], scores[keep], classes[keep]
    assert len(ref) == n_torch == len(scores)
    rb, rs, rc = ref.pred_boxes.tensor.numpy(), ref.scores.numpy(), ref.pred_classes.numpy()
    assert np.array_equal(np.bincount(classes), np.bincount(rc))
    # each ONNX detection's nearest PyTorch one of its label: no farther than the tool's
    # one-to-one pairs, and (scores 1e-8 apart may swap places) mostly at the same position
    dist = np.abs(clipped[:, None] - rb[None]).max(2) + np.where(classes[:, None] == rc[None], 0, np.inf)
    nearest = dist.argmin(1)
    assert 0 < dist.min(1).max() <= box + 1e-6
    assert np.abs(scores - rs[nearest]).max() <= score + 1e-9
    assert (nearest == np.arange(len(nearest))).mean() > 0.95


def test_tool_exits_1_above_the_tolerances(tmp_path, capsys):
    rc = tool_module("check_export_parity").main([
        "--config-file", str(REPO / CONFIG), "--image-size", "150", "198", "--images", "1",
        "--box-tol", "1e-9", "--score-tol", "1e-12"])
    out = capsys.readouterr()
    assert rc == 1
    row = _row(out.out)
    assert row[-1] == "FAIL" and row[7] == "0" and float(row[8]) > 1e-9
    assert out.err.strip().splitlines()[-1] == "above the tolerances: retinanet_R18s_fpn_synthetic (CPUExecutionProvider)"


@pytest.mark.parametrize("args,message", [
    (["--providers", "NoSuchExecutionProvider"],
     "ONNX Runtime provider NoSuchExecutionProvider is not available here (available: "),
    (["--device", "cuda"] if not torch.cuda.is_available() else None, "--device cuda: no CUDA device here"),
    (["--images", "0"], "--images and --image-size must be positive"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, capsys):
    if args is None:
        pytest.skip("a CUDA device is present")
    rc = tool_module("check_export_parity").main(["--config-file", str(REPO / CONFIG), "--workdir", str(tmp_path),
                                                  *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: " + message), err
    assert os.listdir(tmp_path) == []  # refused before anything was written


def test_cuda_providers_missing_is_one_line_naming_onnxruntime_gpu(capsys):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    rc = tool_module("check_export_parity").main(["--config-file", str(REPO / CONFIG), "--providers",
                                                  "CUDAExecutionProvider"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "onnxruntime-gpu" in err[0] and "CUDAExecutionProvider" in err[0]


def test_missing_config_is_one_line_exit_2(tmp_path, capsys):
    rc = tool_module("check_export_parity").main(["--config-file", str(tmp_path / "nope.py")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: {tmp_path / 'nope.py'}: no such config file"]


def test_gpu_check_without_cuda_exits_0():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the check would run")
    r = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHON=sys.executable))
    assert r.returncode == 0, r.stderr
    assert "no CUDA device" in r.stdout and "nothing failed" in r.stdout


def test_gpu_check_ort_step_skips_without_onnxruntime_gpu(tmp_path):
    """The ONNX Runtime step of tools/gpu_check.sh (its ``ort-providers`` helper, run alone):
    without the CUDA/TensorRT providers it prints that onnxruntime-gpu is needed and exits 3,
    which the script reports as SKIP."""
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("this onnxruntime has a GPU provider")
    r = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh"), "--ort-providers"], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, PYTHON=sys.executable))
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert re.search(r"onnxruntime-gpu is needed", r.stdout)
