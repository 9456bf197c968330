"""Finding and loading sod2's LazyConfig files without ``pkg_resources``.

``get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py")`` loads a file of the
``configs/`` folder: from the source checkout (editable installs) or from the copy
packaged as ``sod2/_configs`` (regular installs); ``$SOD2_CONFIGS`` overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path

from detectron2.config import LazyConfig

__all__ = ["configs_root", "get_config_file", "get_config"]


def configs_root() -> Path:
    """The folder that holds sod2's configs."""
    env = os.environ.get("SOD2_CONFIGS")
    if env:
        return Path(env)
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg.parent / "configs", pkg / "_configs"):
        if (cand / "common").is_dir():
            return cand
    raise FileNotFoundError(
        f"sod2 configs not found next to {pkg} (looked for ../configs and _configs); set "
        "$SOD2_CONFIGS to the configs folder of a sod2 checkout")


def get_config_file(path: str) -> str:
    """Absolute path of ``configs/<path>``; an error names the missing file."""
    full = configs_root() / path
    if not full.is_file():
        raise FileNotFoundError(f"{full}: no such sod2 config")
    return str(full)


def get_config(path: str):
    """Load ``configs/<path>`` as a LazyConfig (an omegaconf DictConfig)."""
    return LazyConfig.load(get_config_file(path))
