"""sod2 installed the regular way (`pip install .`, not editable) works outside the checkout:
every subpackage is shipped, the trainer starts, configs come from the packaged copy."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def _copy_ignore(folder, names):
    """Build inputs only: no VCS data, outputs, datasets, tests, caches or build artefacts."""
    skip = {n for n in names if n in ("__pycache__", ".pytest_cache")
            or n.endswith((".so", ".pyc", ".egg-info"))}
    if Path(folder).resolve() == REPO:
        skip |= {n for n in names if n in (".git", ".ci", "datasets", "build", "dist", "tests")
                 or n.startswith("output")}
    return skip


def _python_dirs(root: Path):
    """Dotted names of the folders under ``root/sod2`` (sod2 included) that hold .py files."""
    return {".".join(p.relative_to(root).parts) for p in (root / "sod2").rglob("*")
            if p.is_dir() and any(p.glob("*.py")) and "__pycache__" not in p.parts}


def test_every_python_folder_is_a_package():
    """A folder of sod2 with Python files but no __init__.py is silently left out of a
    regular install (find_packages skips it): sod2/engine was."""
    packages = set(find_packages(str(REPO), include=["sod2", "sod2.*"]))
    assert _python_dirs(REPO) - packages == set(), "add an __init__.py to these folders"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """sod2 installed non-editably (`pip install --target`) from a copy of the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src, target = tmp / "src", tmp / "site"
    shutil.copytree(REPO, src, ignore=_copy_ignore)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--no-cache-dir", "--disable-pip-version-check", "-q",
                           "--target", str(target), str(src)], capture_output=True, text=True, cwd=tmp)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return tmp, target


# Runs a script with only the installed sod2 importable: drops what makes the checkout
# importable in a development environment (an editable install's import hooks, the checkout
# on sys.path), as in a clean environment where sod2 was installed with `pip install .`.
RUN_WITHOUT_CHECKOUT = """
import os, runpy, sys
repo, script = os.path.realpath(sys.argv[1]), sys.argv[2]
editable = lambda o: getattr(o, "__module__", "").startswith("__editable___sod2")
sys.meta_path[:] = [f for f in sys.meta_path if not editable(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != repo]
sys.path_importer_cache.clear()
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""

LOOKUP = """
import sod2, sod2.engine.lazy_train
from sod2.config import get_config, get_config_file
cfg = get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py")
assert cfg.train.max_iter > 0
print(sod2.__file__)
print(sod2.engine.lazy_train.__file__)
print(get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py"))
"""


def _run_installed(installed, script, *args):
    """Run ``script`` from a folder outside the checkout with only the installed sod2."""
    tmp, target = installed
    env = dict(os.environ, PYTHONPATH=str(target), PYTHONNOUSERSITE="1")
    env.pop("SOD2_CONFIGS", None)
    proc = subprocess.run([sys.executable, "-c", RUN_WITHOUT_CHECKOUT, str(REPO), str(script), *args],
                          capture_output=True, text=True, cwd=tmp, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.install
def test_installed_package_has_every_subpackage(installed):
    _, target = installed
    assert _python_dirs(REPO) - _python_dirs(target) == set()
    assert (target / "sod2" / "_configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py").is_file()
    assert list((target / "sod2" / "evaluation").glob("_box_matching*.so"))  # the C kernel is built


@pytest.mark.install
def test_installed_trainer_help_and_config_lookup(installed):
    """tools/lazyconfig_train_net.py starts (it imports sod2.engine) and configs are found in
    the packaged sod2/_configs."""
    tmp, target = installed
    out = _run_installed(installed, str(REPO / "tools" / "lazyconfig_train_net.py"), "--help")
    assert "--config-file" in out and "--eval-only" in out
    script = tmp / "lookup.py"
    script.write_text(LOOKUP)
    sod2_file, engine_file, config_file = map(Path, _run_installed(installed, script).strip().splitlines()[-3:])
    pkg = (target / "sod2").resolve()
    assert sod2_file.resolve() == pkg / "__init__.py"
    assert engine_file.resolve() == pkg / "engine" / "lazy_train.py"
    assert config_file.resolve() == pkg / "_configs" / "baselines" / "faster_rcnn_R18s_fpn_synthetic.py"
