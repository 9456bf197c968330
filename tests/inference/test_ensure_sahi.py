"""tools/ensure_env.py installs the test dependency SAHI with --no-deps plus its missing light
requirements, and only warns when it cannot (the SAHI tests are then skipped)."""
import importlib.util
from pathlib import Path

import pytest

from ..modules import tool_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ensure_env():
    return tool_module("ensure_env")


def test_sahi_is_pinned_to_the_tested_version(ensure_env):
    import importlib.metadata

    pytest.importorskip("sahi")
    assert ensure_env.SAHI == f"sahi=={importlib.metadata.version('sahi')}"
    assert ensure_env.SAHI in (REPO / "requirements.txt").read_text()
    assert f'"{ensure_env.SAHI}"' in (REPO / "setup.py").read_text()


def test_installs_without_deps_then_missing_ones(ensure_env, monkeypatch, capsys):
    installed = set()
    calls = []

    def probe(code):
        if code == ensure_env.SAHI_OK:
            return "sahi" in installed
        return not code.startswith("import shapely")  # only shapely is missing

    def pip(*args):
        calls.append(args)
        installed.add("sahi")
        return True

    monkeypatch.setattr(ensure_env, "_probe", probe)
    monkeypatch.setattr(ensure_env, "_pip", pip)
    ensure_env.ensure_sahi()
    assert calls == [("--no-deps", ensure_env.SAHI), ("shapely>=2.0.0",)]
    calls.clear()
    ensure_env.ensure_sahi()  # present: nothing to do
    assert calls == []
    # pip fails: a warning with the command, no exit
    installed.clear()
    monkeypatch.setattr(ensure_env, "_pip", lambda *a: False)
    ensure_env.ensure_sahi()
    err = capsys.readouterr().err
    assert "warning" in err and f"--no-deps {ensure_env.SAHI}" in err
