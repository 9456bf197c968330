"""tools/convert_weights.py: the output is written atomically (a killed conversion leaves no
file under the final name, the input is never touched), output == input / a folder / an
unwritable place are refused, a checkpoint of another family is named, DDP "module."
prefixes are accepted."""
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from tests.modules import tool_module

REPO = Path(__file__).resolve().parents[2]


def _yolox_checkpoint(prefix=""):
    """A (tiny) official YOLOX checkpoint: its key names, small tensors."""
    sd = {"backbone.backbone.stem.conv.conv.weight": torch.arange(6.0).reshape(2, 3, 1, 1),
          "backbone.backbone.dark2.0.bn.weight": torch.ones(2),
          "backbone.lateral_conv0.conv.weight": torch.full((2, 2, 1, 1), 3.0),
          "head.stems.0.conv.weight": torch.full((2, 2, 1, 1), 5.0)}
    return {"model": {prefix + k: v for k, v in sd.items()}, "start_epoch": 300}


def _convert(capsys, *argv):
    status = tool_module("convert_weights").main(list(argv))
    return status, capsys.readouterr()


def test_refusals_and_kind_hint(tmp_path, capsys):
    src = tmp_path / "yolox_s.pth"
    torch.save(_yolox_checkpoint(), src)
    before = src.read_bytes()
    (tmp_path / "outdir").mkdir()
    cases = [
        (("yolox", str(src), str(src)), f"error: output {src} is the input file"),
        (("yolox", str(src), f"{tmp_path}/./yolox_s.pth"), f"error: output {tmp_path}/./yolox_s.pth is the input file"),
        (("yolox", str(src), str(tmp_path / "outdir")),
         f"error: output {tmp_path / 'outdir'} is a folder; give the converted file's name, e.g. "
         f"{tmp_path / 'outdir' / 'yolox_s_sod2.pth'}"),
        (("yolox", str(src), "/sys/sod2_h3.pth"), "error: cannot write /sys/sod2_h3.pth: /sys is not writable"),
        (("presnet", str(src), str(tmp_path / "o.pth")),
         "error: not a PResNet state dict: it holds 'ema'/'model' entries; it looks like a YOLOX checkpoint; "
         "use `convert_weights.py yolox`"),
        (("rtdetr", str(src), str(tmp_path / "o.pth")),
         "error: not an RT-DETR state dict (no 'backbone.*' and 'decoder.*' keys); it looks like a YOLOX "
         "checkpoint; use `convert_weights.py yolox`"),
    ]
    for argv, expected in cases:
        status, io = _convert(capsys, *argv)
        assert status == 2, (argv, io.err)
        assert io.err.startswith(expected) and len(io.err.strip().splitlines()) == 1, (argv, io.err)
    assert src.read_bytes() == before
    assert not (tmp_path / "o.pth").exists() and not list((tmp_path / "outdir").iterdir())
    # an already converted file given again is named as such
    assert _convert(capsys, "yolox", str(src), str(tmp_path / "conv.pth"))[0] == 0
    status, io = _convert(capsys, "yolox", str(tmp_path / "conv.pth"), str(tmp_path / "again.pth"))
    assert status == 2 and "it is already a converted sod2 checkpoint" in io.err, io.err


def test_ddp_module_prefix_is_accepted(tmp_path, capsys):
    plain, ddp = tmp_path / "plain.pth", tmp_path / "ddp.pth"
    torch.save(_yolox_checkpoint(), plain)
    torch.save(_yolox_checkpoint("module."), ddp)
    assert _convert(capsys, "yolox", str(plain), str(tmp_path / "a.pth"))[0] == 0
    assert _convert(capsys, "yolox", str(ddp), str(tmp_path / "b.pth"))[0] == 0
    a = torch.load(tmp_path / "a.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "b.pth", weights_only=False)["model"]
    assert sorted(b) == ["backbone.bottom_up.dark2.0.bn.weight", "backbone.bottom_up.stem.conv.conv.weight",
                         "backbone.reduce_convs.p5.conv.weight", "head.stems.p3.conv.weight"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(b["head.stems.p3.conv.weight"], torch.full((2, 2, 1, 1), 5.0))


KILLED = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {repo!r})
    from tests.modules import tool_module

    def dies_midway(obj, f, *a, **k):  # part of the file written, then the process is killed
        with open(f, "wb") as fh:
            fh.write(b"PK" + bytes(1000))
            fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dies_midway
    tool_module("convert_weights").main(sys.argv[1:])
""")


def test_killed_conversion_leaves_no_partial_output(tmp_path):
    src, dst = tmp_path / "yolox_s.pth", tmp_path / "out" / "yolox_s_sod2.pth"
    torch.save(_yolox_checkpoint(), src)
    before = src.read_bytes()
    proc = subprocess.run([sys.executable, "-c", KILLED.format(repo=str(REPO)), "yolox", str(src), str(dst)],
                          capture_output=True, text=True, timeout=120, cwd=str(REPO))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not dst.exists(), "no truncated file under the final name"
    assert src.read_bytes() == before
