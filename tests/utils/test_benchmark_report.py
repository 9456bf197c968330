"""sod2.utils.benchmark's report helpers of the benchmark tools: ratio, peak_rss_mb,
write_tables (several tables, one file, atomic) and run_report (a user error is one line,
exit 2, nothing written), against hand-written expected text."""
import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest

from sod2.errors import UserError
from sod2.utils.benchmark import ResultTable, peak_rss_mb, ratio, run_report, write_tables


def test_ratio_hand_values():
    assert ratio(3.0, 2.0) == "1.50x"
    assert ratio(0.1, 0.3) == "0.33x"
    assert ratio(1.0, 0) == "-" and ratio(1.0, None) == "-" and ratio(None, 2.0) == "-"
    for bad in ((float("nan"), 1.0), (1.0, float("inf"))):
        with pytest.raises(ValueError, match="non-finite"):
            ratio(*bad)


def test_peak_rss_grows_with_a_large_allocation():
    # a fresh process: in this one an earlier test may have set a higher peak already. Started
    # from pytest's (often multi-GB) process: getrusage's ru_maxrss survives exec and gave the
    # parent's peak before and after (the CI failure this test caught); VmHWM does not
    code = ("import sys, numpy as np; sys.path.insert(0, {root!r}); from sod2.utils.benchmark import peak_rss_mb; "
            "b = peak_rss_mb(); x = np.ones(256 * 2 ** 20 // 8); print(b, peak_rss_mb(), x.sum() == x.size)")
    root = str(Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", code.format(root=root)], capture_output=True, text=True, check=True)
    before, after, touched = out.stdout.split()
    assert touched == "True" and float(before) > 1
    assert 180 <= float(after) - float(before) <= 300  # MiB (256 touched; freed heap reused), not KiB or bytes
    assert peak_rss_mb() > 1


def _two_tables():
    a = ResultTable(["x", "y"], header="first", notes=["note a"])
    a.add_row([1, "a|b"])
    b = ResultTable(["z"])
    b.add_row(["2"])
    return a, b


EXPECTED = "first\n\n| x | y |\n|---|---|\n| 1 | a\\|b |\n\nnote a\n\n| z |\n|---|\n| 2 |\n"


def test_write_tables_one_blank_line_between(tmp_path):
    out = io.StringIO()
    text = write_tables(_two_tables(), str(tmp_path / "sub" / "r.md"), stream=out)
    assert text == EXPECTED and out.getvalue() == EXPECTED
    assert (tmp_path / "sub" / "r.md").read_text() == EXPECTED


def test_run_report_writes_tables_or_one_error_line(tmp_path, capsys):
    path = tmp_path / "r.md"
    assert run_report(lambda args: _two_tables(), argparse.Namespace(output=str(path))) == 0
    assert capsys.readouterr().out == EXPECTED and path.read_text() == EXPECTED

    def bad(args):
        raise UserError("--slice must be positive, got 0")

    path2 = tmp_path / "never.md"
    assert run_report(bad, argparse.Namespace(output=str(path2))) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: --slice must be positive, got 0\n" and captured.out == ""
    assert not path2.exists()
