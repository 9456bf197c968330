#!/usr/bin/env python
"""
Make sure the Python environment can run sod2 (used by `make demo` and `make test`).

1. torch 2.13.0 with working torchvision ops, and detectron2 (pinned commit) must import;
   when one is missing it is installed with pip, and if that fails this stops with the
   exact commands to run;
2. sod2 itself is installed in editable mode (`pip install -e .`, which also installs
   missing pure-Python requirements and compiles the evaluation kernel) unless this
   checkout is already the installed one and its kernel is up to date;
3. the test dependency SAHI (the sliced-inference equivalence tests and
   `tools/benchmark_sliced.py` compare with it) is installed at the tested version with
   `pip install --no-deps` (its own requirements would not change torch, but could add a
   second OpenCV distribution), plus those of its light requirements that are missing;
   if that fails, a warning names the command and the SAHI tests are skipped;
4. the optional ``export`` extra (onnx, onnxruntime, onnxscript: tools/export_model.py and the
   ONNX parity tests) is installed when missing; if that fails, a warning names the command
   and the export tests are skipped.

It never reinstalls what already imports (pip would re-clone detectron2 otherwise).
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH = "torch==2.13.0"
TORCHVISION = "torchvision==0.28.0"
D2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
D2 = f"git+https://github.com/facebookresearch/detectron2.git@{D2_COMMIT}"

HELP = f"""
sod2 needs, in this Python ({sys.executable}):
  1. PyTorch 2.13.0 and torchvision 0.28.0, the regular builds (torchvision.ops must load;
     a CPU-only torch wheel without matching torchvision ops does not work):
       {sys.executable} -m pip install {TORCH} {TORCHVISION}
     (see https://pytorch.org/get-started/locally/ for other platforms/CUDA versions)
  2. detectron2 from its official repository at commit {D2_COMMIT[:12]}:
       {sys.executable} -m pip install --no-build-isolation '{D2}'
     (or: git clone https://github.com/facebookresearch/detectron2 && cd detectron2 &&
      git checkout {D2_COMMIT} && {sys.executable} -m pip install --no-build-isolation .)
Then run the make target again.
"""


def _probe(code: str) -> bool:
    """Run ``code`` in a fresh interpreter (a failed import must not poison this one)."""
    return subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True).returncode == 0


def _pip(*args: str) -> bool:
    print("+ pip install " + " ".join(args), flush=True)
    return subprocess.run([sys.executable, "-m", "pip", "install", *args]).returncode == 0


def _fail(what: str) -> None:
    sys.stderr.write(f"\nerror: {what} is missing and could not be installed.\n{HELP}")
    sys.exit(1)


SAHI = "sahi==0.12.8"
# import name -> requirement, for SAHI's pure-Python requirements (sahi 0.12.8's metadata)
SAHI_DEPS = {"shapely": "shapely>=2.0.0", "fire": "fire", "termcolor": "termcolor", "click": "click",
             "tqdm": "tqdm>=4.48.2", "yaml": "pyyaml", "requests": "requests", "PIL": "pillow>=8.2.0",
             "matplotlib": "matplotlib"}
SAHI_OK = ("import importlib.metadata as m\n"
           f"assert m.version('sahi') == {SAHI.split('==')[1]!r}\n"
           "import sahi.slicing, sahi.predict, sahi.postprocess.combine\n")

EXPORT = ("onnx>=1.16", "onnxruntime>=1.17", "onnxscript>=0.5")  # setup.py's "export" extra
EXPORT_OK = "import onnx, onnxruntime, onnxscript"

TORCH_OK = "import torch, torchvision.ops; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)"
D2_OK = "import detectron2, detectron2._C"
# sod2 resolves to this checkout and its compiled kernel is newer than its source
SOD2_OK = (
    "import importlib.util, os\n"
    "s = importlib.util.find_spec('sod2')\n"
    f"assert s and os.path.realpath(os.path.dirname(s.origin)) == os.path.realpath({os.path.join(ROOT, 'sod2')!r})\n"
    "k = importlib.util.find_spec('sod2.evaluation._box_matching')\n"
    f"assert k and os.path.getmtime(k.origin) >= os.path.getmtime({os.path.join(ROOT, 'sod2', 'csrc', 'box_matching.c')!r})\n"
    "import sod2\n"
)


def ensure_prerequisites() -> None:
    if not _probe(TORCH_OK):
        if not (_pip(TORCH, TORCHVISION) and _probe(TORCH_OK)):
            _fail("torch 2.13.0 / torchvision 0.28.0 with working torchvision ops")
    if not _probe(D2_OK):
        if not (_pip("--no-build-isolation", D2) and _probe(D2_OK)):
            _fail("detectron2")


def ensure_sahi() -> None:
    """Install SAHI (test dependency) without its dependencies, then its missing light ones."""
    if _probe(SAHI_OK):
        return
    ok = _pip("--no-deps", SAHI)
    missing = [req for mod, req in SAHI_DEPS.items() if not _probe(f"import {mod}")]
    if ok and missing:
        ok = _pip(*missing)
    if not (ok and _probe(SAHI_OK)):
        sys.stderr.write(f"\nwarning: the test dependency {SAHI} could not be installed; the tests that "
                         f"compare with SAHI will be skipped. Install it with:\n  {sys.executable} -m pip "
                         f"install --no-deps {SAHI} {' '.join(SAHI_DEPS.values())}\n")


def ensure_export() -> None:
    """Install the ``export`` extra (ONNX export and ONNX Runtime) when missing; a warning, not a
    failure, when it cannot be installed (the export tests are then skipped)."""
    if _probe(EXPORT_OK):
        return
    if not (_pip(*EXPORT) and _probe(EXPORT_OK)):
        sys.stderr.write(f"\nwarning: the export extra ({', '.join(EXPORT)}) could not be installed; "
                         f"tools/export_model.py and the export tests need it. Install it with:\n  "
                         f"{sys.executable} -m pip install -e .[export]\n")


def main(argv=None) -> None:
    import argparse

    argparse.ArgumentParser(
        description=__doc__.strip().splitlines()[0],
        epilog="\n".join(__doc__.strip().splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)  # --help, or refuse arguments
    # one interpreter start when everything is in place (the common case)
    if _probe("\n".join([TORCH_OK, D2_OK, SOD2_OK, SAHI_OK, EXPORT_OK])):
        print("environment ready: torch, torchvision ops, detectron2, sod2, sahi and the export extra import",
              flush=True)
        return
    ensure_prerequisites()
    if not _probe(SOD2_OK):
        # --no-build-isolation: build with the installed setuptools (no download)
        if not _pip("--no-build-isolation", "-e", ROOT):
            sys.stderr.write("\nerror: `pip install -e .` failed (see above). It needs a C compiler "
                             "and the Python headers, and network access for missing "
                             "requirements.\n" + HELP)
            sys.exit(1)
    if not _probe("import sod2, sod2.evaluation._box_matching"):
        _fail("sod2 (installed but not importable)")
    ensure_sahi()
    ensure_export()
    print("environment ready: torch, torchvision ops, detectron2 and sod2 import", flush=True)


if __name__ == "__main__":
    main()
