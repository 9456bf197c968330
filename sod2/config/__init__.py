"""Finding and loading sod2's LazyConfig files without ``pkg_resources``.

``get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py")`` loads a file of the
``configs/`` folder: from the source checkout (editable installs) or from the copy
packaged as ``sod2/_configs`` (regular installs); ``$SOD2_CONFIGS`` overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path

from detectron2.config import LazyConfig

__all__ = ["configs_root", "get_config_file", "get_config", "config_difference"]


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


def _diff(a, b, prefix=""):
    from functools import partial

    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            out += [key] if (k in a) != (k in b) else _diff(a[k], b[k], key)
        return out
    if isinstance(a, partial) and isinstance(b, partial):  # equal only by identity
        return _diff([a.func, list(a.args), a.keywords], [b.func, list(b.args), b.keywords], prefix)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [k for i, (x, y) in enumerate(zip(a, b)) for k in _diff(x, y, f"{prefix}[{i}]")]
    return [] if a == b else [prefix]


def config_difference(a, b, sections=("model", "optimizer", "lr_multiplier", "dataloader", "train"),
                      ignore=("train.output_dir",)):
    """The dotted keys in which two configs differ, over ``sections``, sorted.

    ``a``, ``b``: loaded LazyConfigs or paths (relative to ``configs/``, or files). Values are
    compared unresolved (an interpolation ``${..x}`` is the same text in both), so a key shows
    where a config *sets* something else, not where a value merely follows another key; a
    key that only one side has is listed once (not what lies under it). ``ignore``: keys left out.
    """
    from omegaconf import OmegaConf

    a, b = (get_config(c) if isinstance(c, (str, os.PathLike)) else c for c in (a, b))
    keys = []
    for s in sections:
        if s in a or s in b:
            keys += _diff(OmegaConf.to_container(a[s], resolve=False) if s in a else {},
                          OmegaConf.to_container(b[s], resolve=False) if s in b else {}, s) \
                if (s in a and s in b) else [s]
    return sorted(k for k in keys if k not in ignore)
