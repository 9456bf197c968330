"""sod2/engine/checkpoint.py: atomic checkpoint saves (a killed or failed save leaves the
previous checkpoint and last_checkpoint intact) and the strict loader of checkpoints given
for inference (--eval-only, tools/demo.py)."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py")
TOOL = str(REPO / "tools" / "lazyconfig_train_net.py")


def _model(*overrides):
    from detectron2.config import instantiate

    from sod2.engine.lazy_train import load_config

    torch.manual_seed(0)
    return instantiate(load_config(CONFIG, ["train.device=cpu", *overrides], warn=False).model).eval()


# ------------------------------------------------------------------ atomic saves
KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys, torch
    from torch import nn
    from sod2.engine.checkpoint import AtomicDetectionCheckpointer
    from sod2.engine.ema import EMACheckpointer, ModelEMA

    out, which = sys.argv[1], sys.argv[2]
    model = nn.Linear(4, 3)
    ck = (AtomicDetectionCheckpointer(model, out) if which == "plain"
          else EMACheckpointer(model, out, ema=ModelEMA(model)))
    ck.save("model_0000000")

    def dies_midway(obj, f, *a, **k):  # writes part of the file, then the process is killed
        with open(f, "wb") as fh:
            fh.write(b"PK partial")
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dies_midway
    ck.save("model_0000001")
""")


@pytest.mark.parametrize("which", ["plain", "ema"])
def test_checkpoint_save_killed_midway_leaves_previous_checkpoint(tmp_path, which):
    script = tmp_path / "save.py"
    script.write_text(KILLED_SAVE)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), str(out), which], capture_output=True, text=True,
                          timeout=120, cwd=str(REPO))
    assert proc.returncode == -9, proc.stderr[-2000:]
    # no file under the final name of the interrupted save (Detectron2's own save leaves a
    # 10-byte model_0000001.pth here), the previous one whole and still the last
    assert not (out / "model_0000001.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"
    state = torch.load(out / "model_0000000.pth", weights_only=False)
    assert set(state["model"]) == {"weight", "bias"}
    # the killed process's temporary is removed by the next save of that name
    from sod2.engine.checkpoint import AtomicDetectionCheckpointer

    assert [p.name for p in out.iterdir() if ".tmp-" in p.name]
    AtomicDetectionCheckpointer(nn.Linear(4, 3), str(out)).save("model_0000001")
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]
    assert (out / "last_checkpoint").read_text() == "model_0000001.pth"


def test_training_save_that_fails_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """Through the trainer: the checkpoint of iteration 1 fails while being written."""
    from detectron2.engine import default_argument_parser

    from sod2.engine.lazy_train import main

    real_save = torch.save
    calls = []

    def fails_on_second(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            with open(f, "wb") as fh:
                fh.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", fails_on_second)
    out = tmp_path / "run"
    args = default_argument_parser().parse_args([
        "--config-file", CONFIG, "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        "train.device=cpu", "train.max_iter=3", "train.checkpointer.period=1", "train.eval_period=0",
        "dataloader.evaluator=null", f"train.output_dir={out}"])
    with pytest.raises(OSError, match="No space left"):
        main(args)
    assert not (out / "model_0000001.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_0000000.pth"
    assert "roi_heads.box_predictor.cls_score.weight" in _load(out / "model_0000000.pth")["model"]
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


# ------------------------------------------------------------------ strict loading
def test_load_for_inference_threshold_and_module_prefix(tmp_path, caplog):
    from sod2.engine.checkpoint import MAX_UNMATCHED_FRACTION, CheckpointMismatchError, load_for_inference

    src = _model()
    sd = src.state_dict()
    total = sum(v.numel() for v in sd.values())
    # a checkpoint saved from a DDP-wrapped model: every key "module."-prefixed
    path = tmp_path / "ddp.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, path)
    dst = _model("train.seed=1")
    torch.nn.init.constant_(dst.roi_heads.box_predictor.cls_score.weight, 7.0)
    rep = load_for_inference(dst, str(path))
    assert rep["unmatched"] == 0 and rep["total"] == total
    assert all(torch.equal(v, sd[k]) for k, v in dst.state_dict().items())

    # within the allowed fraction: a checkpoint without a 256-element bias loads with a warning
    small = "roi_heads.box_head.fc1.bias"
    assert sd[small].numel() / total <= MAX_UNMATCHED_FRACTION
    torch.save({"model": {k: v for k, v in sd.items() if k != small}}, tmp_path / "older.pth")
    rep = load_for_inference(_model(), str(tmp_path / "older.pth"))
    assert rep["unmatched"] == sd[small].numel() and rep["tensors"] == 1
    assert rep["fraction"] == pytest.approx(sd[small].numel() / total)

    # another class count: the box predictor (4112 elements, 0.11 % of 3.9M) is refused
    other = _model("model.roi_heads.num_classes=5").state_dict()
    torch.save({"model": other}, tmp_path / "five.pth")
    head = sum(v.numel() for k, v in sd.items() if k.startswith("roi_heads.box_predictor."))
    assert head / total > MAX_UNMATCHED_FRACTION
    with pytest.raises(CheckpointMismatchError) as e:
        load_for_inference(_model(), str(tmp_path / "five.pth"))
    msg = str(e.value)
    assert "\n" not in msg and "4 of its 150 tensors (4 of another shape, 0 missing)" in msg
    assert f"{head} of {total / 1e6:.2f}M weights" in msg, msg
    assert "roi_heads.box_predictor.cls_score.weight: (6, 256) in the checkpoint, (4, 256) in the model" in msg

    for bad, text in ((str(tmp_path / "none.pth"), "no such file"), (str(tmp_path), "a directory"),
                      ("", "no checkpoint given")):
        with pytest.raises(CheckpointMismatchError, match=text):
            load_for_inference(_model(), bad)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="cannot read it as a checkpoint"):
        load_for_inference(_model(), str(tmp_path / "text.pth"))


def _one_error_line(proc):
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_eval_only_and_demo_refuse_weights_of_another_model(tmp_path):
    """--eval-only and tools/demo.py with a checkpoint of another model kind: one line,
    exit 2 (Detectron2 loads it with "Skip loading parameter" warnings and runs random weights)."""
    from PIL import Image

    # another kind: keys of a YOLOX (none of the Faster R-CNN's)
    other = {"backbone.bottom_up.stem.conv.conv.weight": torch.zeros(32, 12, 3, 3),
             "head.cls_preds.p3.weight": torch.zeros(3, 128, 1, 1)}
    ckpt = tmp_path / "yolox.pth"
    torch.save({"model": other}, ckpt)
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, TOOL, "--config-file", CONFIG, "--eval-only", "train.device=cpu",
                           f"train.init_checkpoint={ckpt}", f"train.output_dir={out}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = _one_error_line(proc)
    # all 150 tensors but the 20 BatchNorm num_batches_tracked, which PyTorch fills in
    assert f"checkpoint {ckpt} does not fit the model (SOD2GeneralizedRCNN): 130 of its 150 tensors" in line
    assert "(0 of another shape, 130 missing) = 3.89M of 3.89M weights (100%) would stay random" in line
    assert "Skip loading parameter" not in proc.stdout + proc.stderr

    Image.new("RGB", (64, 48), (40, 80, 120)).save(tmp_path / "a.png")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", CONFIG,
                           "--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "vis"),
                           "--opts", "train.device=cpu", f"train.init_checkpoint={ckpt}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "does not fit the model" in _one_error_line(proc)
    assert not (tmp_path / "vis" / "a.png").exists()
