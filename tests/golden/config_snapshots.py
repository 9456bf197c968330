"""Every config's resolved values as plain data, and the comparison a reorganisation of
``configs/`` (renamed files, configs written as diffs of their plain twins, ``output_dir``
lines removed) is checked with: ``compare_to_snapshot(old_stem, new_cfg)`` lists each dotted
key whose value differs from what the config of that stem resolved to when
``tests/fixtures/config-snapshots.json.gz`` was written (``snapshot_configs.py``, from
committed code).

Plain data: ``LazyConfig.load`` then ``OmegaConf.to_container(resolve=True)``; a class or
function (a LazyCall's ``_target_``, a ``functools.partial``'s function) becomes its dotted
name ``module.qualname``, a partial ``{"_partial_": name, "args", "keywords"}``, a tuple a
list, a non-finite float the string "nan"/"inf"/"-inf"; any other object fails loudly
(``TypeError``) instead of being stored as an address-dependent repr.
"""
from __future__ import annotations

import fnmatch
import functools
import gzip
import json
import math
import re
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Union

SNAPSHOT_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "config-snapshots.json.gz"

# Configs renamed since the fixtures were recorded (issue 16 item 3: no '-' in a config's name,
# so every config is importable as a Python module): stem when recorded -> stem today. The
# fixtures (config snapshots, tests/fixtures/golden/ and legacy-keys/) stay keyed by the recorded
# stem; whoever re-records them all empties this map.
CONFIG_RENAMES: Dict[str, str] = {
    "bsdetr-plain_r18s_synthetic": "bsdetr_none_r18s_synthetic",
    "bsdetr-plain_r18vd_hituav": "bsdetr_none_r18vd_hituav",
    "bsdetr-plain_r50vd_sodad_patches": "bsdetr_none_r50vd_sodad_patches",
    "bsdetr-plain_r50vd_visdrone": "bsdetr_none_r50vd_visdrone",
    "bsdetr-spr_r18s_synthetic": "bsdetr_spr_r18s_synthetic",
    "bsdetr-spr_r18vd_hituav": "bsdetr_spr_r18vd_hituav",
    "bsdetr-spr_r50vd_sodad_patches": "bsdetr_spr_r50vd_sodad_patches",
    "bsdetr-spr_r50vd_visdrone": "bsdetr_spr_r50vd_visdrone",
    "bsdetr-sr_r18s_synthetic": "bsdetr_sr_r18s_synthetic",
    "bsdetr-sr_r18vd_hituav": "bsdetr_sr_r18vd_hituav",
    "bsdetr-sr_r50vd_sodad_patches": "bsdetr_sr_r50vd_sodad_patches",
    "bsdetr-sr_r50vd_visdrone": "bsdetr_sr_r50vd_visdrone",
    "bsdetr-st-sr_r18s_synthetic": "bsdetr_st_sr_r18s_synthetic",
    "bsdetr-st-sr_r18vd_hituav": "bsdetr_st_sr_r18vd_hituav",
    "bsdetr-st-sr_r50vd_sodad_patches": "bsdetr_st_sr_r50vd_sodad_patches",
    "bsdetr-st-sr_r50vd_visdrone": "bsdetr_st_sr_r50vd_visdrone",
    "cfinet-crpn_R18s_fpn_synthetic": "cfinet_crpn_R18s_fpn_synthetic",
    "cfinet-crpn_R50_fpn_aitod_1x": "cfinet_crpn_R50_fpn_aitod_1x",
    "cfinet-crpn_R50_fpn_hituav_1x": "cfinet_crpn_R50_fpn_hituav_1x",
    "cfinet-crpn_R50_fpn_sodad_1x": "cfinet_crpn_R50_fpn_sodad_1x",
    "cfinet-crpn_R50_fpn_visdrone_1x": "cfinet_crpn_R50_fpn_visdrone_1x",
    "cfinet-fi_R18s_fpn_synthetic": "cfinet_fi_R18s_fpn_synthetic",
    "cfinet-fi_R50_fpn_aitod_1x": "cfinet_fi_R50_fpn_aitod_1x",
    "cfinet-fi_R50_fpn_hituav_1x": "cfinet_fi_R50_fpn_hituav_1x",
    "cfinet-fi_R50_fpn_sodad_1x": "cfinet_fi_R50_fpn_sodad_1x",
    "cfinet-fi_R50_fpn_visdrone_1x": "cfinet_fi_R50_fpn_visdrone_1x",
    "cfinet-plain_R18s_fpn_hituav_cpu": "cfinet_plain_R18s_fpn_hituav_cpu",
    "cfinet-plain_R18s_fpn_synthetic": "cfinet_plain_R18s_fpn_synthetic",
    "cfinet-plain_R50_fpn_aitod_1x": "cfinet_plain_R50_fpn_aitod_1x",
    "cfinet-plain_R50_fpn_hituav_1x": "cfinet_plain_R50_fpn_hituav_1x",
    "cfinet-plain_R50_fpn_sodad_1x": "cfinet_plain_R50_fpn_sodad_1x",
    "cfinet-plain_R50_fpn_visdrone_1x": "cfinet_plain_R50_fpn_visdrone_1x",
    "fgprobe-plain_yolox_s_p2_hituav": "fgprobe_plain_yolox_s_p2_hituav",
    "fgprobe-plain_yolox_tiny_p2_hituav_cpu": "fgprobe_plain_yolox_tiny_p2_hituav_cpu",
    "fgprobe-plain_yolox_tiny_p2_synthetic": "fgprobe_plain_yolox_tiny_p2_synthetic",
    "fgprobe-plain_yolox_x_p2_uavdt": "fgprobe_plain_yolox_x_p2_uavdt",
    "fgprobe-plain_yolox_x_p2_visdrone": "fgprobe_plain_yolox_x_p2_visdrone",
    "faster_rcnn_srtod-light_R18s_fpn_synthetic": "faster_rcnn_srtod_light_R18s_fpn_synthetic",
    "faster_rcnn_srtod-light_R50_fpn_visdrone_1x": "faster_rcnn_srtod_light_R50_fpn_visdrone_1x",
}
_RECORDED_STEM = {new: old for old, new in CONFIG_RENAMES.items()}


def recorded_stem(stem: str) -> str:
    """The stem the fixtures know the config ``stem`` (today's file name without ``.py``) by."""
    return _RECORDED_STEM.get(stem, stem)


def current_path(rel: str) -> str:
    """A config path relative to ``configs/`` as recorded in a fixture -> its path today
    (``"cfinet/cfinet-plain_R18s_fpn_synthetic.py"`` -> ``"cfinet/cfinet_plain_R18s_fpn_synthetic.py"``)."""
    folder, _, name = rel.rpartition("/")
    stem = CONFIG_RENAMES.get(name[:-3], name[:-3]) if name.endswith(".py") else None
    return rel if stem is None else (f"{folder}/{stem}.py" if folder else f"{stem}.py")



def config_files(root: Path) -> List[str]:
    """The configs under ``root`` (``configs/``) outside ``common/``, relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*.py")
                  if "common" not in p.relative_to(root).parts and p.name != "__init__.py")


def dotted_name(obj) -> str:
    """``module.qualname`` of a class or function."""
    return f"{obj.__module__}.{obj.__qualname__}"


def to_plain(obj, where: str = ""):
    """``obj`` (the output of ``OmegaConf.to_container``) as JSON-able plain data (see the
    module docstring); ``where`` names the key in errors."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, functools.partial):
        return {"_partial_": dotted_name(obj.func), "args": to_plain(list(obj.args), where),
                "keywords": to_plain(dict(obj.keywords), where)}
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return dotted_name(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # a numpy scalar
        return to_plain(obj.item(), where)
    raise TypeError(f"{where}: cannot snapshot a {type(obj).__name__} ({obj!r})")


def resolved(cfg) -> dict:
    """A loaded LazyConfig (DictConfig) as resolved plain data."""
    from omegaconf import OmegaConf

    return to_plain(OmegaConf.to_container(cfg, resolve=True))


def snapshot(path: Union[str, Path]) -> dict:
    """The config file ``path`` loaded (``LazyConfig.load``) and resolved, as plain data."""
    from detectron2.config import LazyConfig

    return resolved(LazyConfig.load(str(path)))


@functools.lru_cache(maxsize=None)
def _load(file: str) -> Dict[str, dict]:
    with gzip.open(file, "rt", encoding="utf-8") as f:
        return json.load(f)["configs"]


def load_snapshots(file: Union[str, Path] = SNAPSHOT_FILE) -> Dict[str, dict]:
    """stem -> {"path": relative config path, "config": resolved plain data}."""
    return _load(str(file))


def flatten(tree, prefix: str = "") -> Dict[str, object]:
    """Dotted key (``a.b[0].c``) -> leaf value; an empty dict or list is a leaf."""
    if isinstance(tree, dict) and tree:
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(tree, list) and tree:
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: tree}


def _ignored(key: str, patterns: Iterable[str]) -> bool:
    # a pattern ignores the key itself and everything under it
    return any(fnmatch.fnmatchcase(key, p) or key.startswith(p + ".") or key.startswith(p + "[")
               for p in patterns)


def compare_to_snapshot(stem_old: str, cfg_new, ignore_keys: Iterable[str] = (),
                        target_aliases: Optional[Mapping[str, str]] = None,
                        snapshot_file: Union[str, Path] = SNAPSHOT_FILE,
                        key_moves: Iterable = ()) -> List[str]:
    r"""The differences between the snapshot of config ``stem_old`` and ``cfg_new``, one line
    per dotted key (``"key: <old> -> <new>"``, ``<missing>`` where a side lacks the key); an
    empty list when they agree.

    Args:
        stem_old: the config's file name without ``.py`` when the snapshot was written
            (e.g. ``"cfinet-plain_R18s_fpn_synthetic"``).
        cfg_new: a loaded LazyConfig (DictConfig), a path to a config file, or plain data
            (``resolved(cfg)``).
        ignore_keys: ``fnmatch`` patterns of dotted keys to skip (``"train.output_dir"``,
            ``"model.backbone.*"``); a pattern also skips everything under the key it names.
        target_aliases: old dotted name -> new dotted name of moved classes/functions (e.g.
            ``{"sod2.modeling.methods.cfinet.feature_imitation.FeatureImitationROIHeads":
            "sod2.modeling.methods.cfinet.feature_imitation.FeatureImitationROIHeads"}``):
            an old value equal to a key of this map compares as its new name.
        key_moves: ``(regex, replacement)`` pairs applied (``re.sub``, first match wins) to
            each recorded dotted key before comparing: a key moved on purpose (e.g.
            ``(r"^model\.head\.probe\.", "model.probe.")``) compares with its new place.
    """
    snaps = load_snapshots(snapshot_file)
    if stem_old not in snaps:
        raise KeyError(f"no config snapshot for {stem_old!r} in {snapshot_file}")
    if isinstance(cfg_new, (str, Path)):
        new = snapshot(cfg_new)
    elif isinstance(cfg_new, dict):
        new = cfg_new
    else:
        new = resolved(cfg_new)
    old, new = flatten(snaps[stem_old]["config"]), flatten(new)
    moves = [(re.compile(p), r) for p, r in key_moves]
    if moves:
        moved = {}
        for k, v in old.items():
            for pat, repl in moves:
                if pat.search(k):
                    k = pat.sub(repl, k)
                    break
            moved[k] = v
        old = moved
    aliases = dict(target_aliases or {})
    ignore = list(ignore_keys)
    out = []
    for key in sorted(set(old) | set(new)):
        if _ignored(key, ignore):
            continue
        a, b = old.get(key, "<missing>"), new.get(key, "<missing>")
        if isinstance(a, str) and a in aliases:
            a = aliases[a]
        if key not in old or key not in new or a != b or type(a) is not type(b):
            out.append(f"{key}: {old.get(key, '<missing>')!r} -> {new.get(key, '<missing>')!r}")
    return out
