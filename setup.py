#!/usr/bin/env python
"""sod2: small and tiny object detection components for Detectron2."""
from pathlib import Path

import shutil

from setuptools import Extension, find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    """Ship configs/ inside the package as sod2/_configs for regular (non-editable)
    installs; editable installs read configs/ from the checkout (sod2.config)."""

    def run(self):
        super().run()
        dest = Path(self.build_lib) / "sod2" / "_configs"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(ROOT / "configs", dest)


def read_version():
    for line in (ROOT / "sod2" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("sod2/__init__.py has no __version__")


setup(
    name="sod2",
    version=read_version(),
    description="Small and tiny object detection for Detectron2: CFINet, SR-TOD, "
    "datasets, scale-bucket evaluation",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["sod2", "sod2.*"]),
    cmdclass={"build_py": BuildPyWithConfigs},
    ext_modules=[
        Extension(
            "sod2.evaluation._box_matching",
            sources=["sod2/csrc/box_matching.c"],
            extra_compile_args=["-O3"],
        )
    ],
    # torch, torchvision and detectron2 are prerequisites (requirements.txt, README):
    # they are installed from their own channels, not resolved by pip from here.
    install_requires=[
        "fvcore",
        "iopath",
        "pycocotools>=2.0.2",
        "numpy",
        "opencv-python",
        "orjson",
    ],
    # sahi: the sliced-inference tests compare sod2's merge and slice geometry with it
    extras_require={"test": ["pytest", "sahi==0.12.8", "shapely>=2.0.0", "fire"],
                    # tools/export_model.py (torch 2.13's dynamo ONNX exporter) and ONNX Runtime;
                    # tested with onnx 1.23.2, onnxruntime 1.32.0, onnxscript 0.7.2
                    "export": ["onnx>=1.16", "onnxruntime>=1.17", "onnxscript>=0.5"]},
)
