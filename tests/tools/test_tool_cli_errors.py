"""Tools answer --help and refuse bad input in one line: tools/ensure_env.py --help (it ran
`pip install -e` before), tools/gpu_check.sh --help (ignored before), tools/proposal_recall.py
with a model without a proposal generator or a missing config."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.modules import tool_module

REPO = Path(__file__).resolve().parents[2]


def test_ensure_env_help_prints_help_and_installs_nothing():
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "ensure_env.py"), "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ensure_env.py [-h]")
    assert "Make sure the Python environment can run sod2" in proc.stdout
    assert "+ pip install" not in proc.stdout + proc.stderr and "environment ready" not in proc.stdout
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "ensure_env.py"), "--bogus"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr
    assert "+ pip install" not in proc.stdout


def test_gpu_check_help_prints_usage_and_runs_nothing(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "tools" / "gpu_check.sh"), "--help"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "o"),
                                           "PYTHON": "/bin/false"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("The CUDA check in one go (`make gpu-check`)")
    assert "  tools/gpu_check.sh [extra pytest args]" in lines
    assert "GPU check summary" not in proc.stdout and not (tmp_path / "o").exists()


def test_proposal_recall_refuses_a_model_without_proposals(tmp_path, capsys):
    main = tool_module("proposal_recall").main
    retina = str(REPO / "configs" / "baselines" / "retinanet_R18s_fpn_synthetic.py")
    cases = [
        (["--model", "R", retina, str(tmp_path / "w.pth")],
         f"error: {retina}: the model (SOD2RetinaNet) has no proposal generator; proposal recall needs a two-stage "
         "detector"),
        (["--model", "R", str(tmp_path / "none.py"), str(tmp_path / "w.pth")],
         f"error: --config-file {tmp_path / 'none.py'}: no such file"),
        (["--model", "R", str(REPO / "configs" / "cfinet" / "cfinet_R18s_fpn_synthetic.py"), str(tmp_path / "w.pth")],
         f"error: checkpoint {tmp_path / 'w.pth'}: no such file"),
        (["--dataset", "nope", "--model", "R", retina, "w.pth"], "error: --dataset: dataset 'nope' is not registered"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(expected) and len(err.strip().splitlines()) == 1, (argv, err)
