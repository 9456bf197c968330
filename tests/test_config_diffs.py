"""Configs as diffs (issue 16 item 3): every method config differs from its twin (the config
it extends: the plain detector, or the full method for an ablation) exactly in the method's
keys, over model, optimizer, lr_multiplier, dataloader and train (``sod2.config.
config_difference``, the keys ``tools/compare_configs.py --keys-only`` prints).

The pairs are found by name (``RULES``); every config under the method folders is either a
method config with a twin, a plain twin, or listed in ``NOT_A_DIFF`` with the reason.
"""
import fnmatch
import re

import pytest

from sod2.config import config_difference, configs_root

ROOT = configs_root()

# (regex on "<folder>/<stem>", twin candidates (first that exists), keys allowed to differ)
CFINET_KEYS = ("model._target_", "model.cfinet", "model.cfinet.*", "model.roi_heads._target_",
               "optimizer.params.*")
RULES = [
    (r"cfinet/cfinet_crpn_(.+)", [r"cfinet/cfinet_\1"], ("model.cfinet.imitation",)),
    (r"cfinet/cfinet_fi_(.+)", [r"cfinet/cfinet_\1"], ("model.cfinet.crpn", "optimizer.params.*")),
    (r"cfinet/cfinet_(?!plain_|crpn_|fi_)(R.+)", [r"cfinet/cfinet_plain_\1"], CFINET_KEYS),
    (r"srtod/faster_rcnn_srtod_light_(.+)", [r"srtod/faster_rcnn_srtod_\1"], ("model.feature_hook.*",)),
    (r"srtod/(faster_rcnn|cascade_rcnn|retinanet)_srtod_(?!plain_|light_)(.+)",
     [r"srtod/\1_srtod_plain_\2", r"baselines/\1_\2"], ("model.feature_hook", "model.feature_hook.*")),
    (r"srtod/cfinet_srtod_(?!plain_)(.+)", [r"srtod/cfinet_srtod_plain_\1", r"cfinet/cfinet_\1"],
     ("model.feature_hook", "model.feature_hook.*")),
    (r"fgprobe/fgprobe_(?!plain_)(yolox_.+)", [r"fgprobe/fgprobe_plain_\1"], ("model._target_", "model.probe", "model.probe.*")),
    (r"bsdetr/bsdetr_(?:none|sr|spr|st_sr)_(.+)", [r"bsdetr/bsdetr_\1"], ("model.criterion.better_sampling.*",)),
    (r"bsdetr/bsdetr_(?!plain_|none_|sr_|spr_|st_sr_)(.+)", [r"bsdetr/bsdetr_plain_\1"],
     ("model.criterion._target_", "model.criterion.better_sampling", "model.criterion.better_sampling.*")),
    (r"bsdetr/bs_yolox_(.+)", [r"fgprobe/fgprobe_plain_yolox_\1"],
     ("model._target_", "model.better_sampling", "model.better_sampling.*")),
]
PLAIN = re.compile(r"(cfinet|fgprobe|bsdetr)/\1_plain_.+|srtod/.+_srtod_plain_.+")
# configs of the method folders that are not a method's diff from a twin, and why
NOT_A_DIFF = {
    "cfinet/cfinet_R50_fpn_sodad_sliced": "inference-only variant of cfinet_R50_fpn_sodad_1x (sliced test loader)",
}


def method_configs():
    out = []
    for folder in ("cfinet", "srtod", "fgprobe", "bsdetr"):
        out += sorted(f"{folder}/{p.stem}" for p in (ROOT / folder).glob("*.py") if p.stem != "__init__")
    return out


def twin_of(name):
    for pattern, twins, keys in RULES:
        m = re.fullmatch(pattern, name)
        if m:
            for t in twins:
                cand = m.expand(t)
                if (ROOT / f"{cand}.py").is_file():
                    return cand, keys
            return None, keys
    return None, None


def test_every_method_config_is_paired():
    unpaired = []
    for name in method_configs():
        if PLAIN.fullmatch(name) or name in NOT_A_DIFF:
            continue
        twin, keys = twin_of(name)
        if twin is None:
            unpaired.append(name)
    assert not unpaired, f"method configs without a twin to be a diff of: {unpaired}"


@pytest.mark.parametrize("name", [n for n in method_configs() if twin_of(n)[0] is not None])
def test_method_config_is_its_twin_plus_the_method(name):
    twin, allowed = twin_of(name)
    keys = config_difference(f"{name}.py", f"{twin}.py")
    extra = [k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in allowed)]
    assert keys, f"{name} is identical to {twin}: not a method config"
    assert not extra, f"{name} differs from {twin} outside the method's keys: {extra}"


def test_the_twin_rule_catches_a_foreign_key():
    """The comparison sees a changed non-method value (hand-made pair)."""
    from sod2.config import get_config

    a = get_config("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py")
    b = get_config("fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py")
    b.optimizer.lr = float(b.optimizer.lr) * 2
    keys = config_difference(a, b)
    assert "optimizer.lr" in keys


def test_compare_configs_keys_only_prints_the_difference(capsys):
    from .modules import tool_module

    tool = tool_module("compare_configs")
    keys = tool.main(["--keys-only", str(ROOT / "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py"),
                      str(ROOT / "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py")])
    out = capsys.readouterr().out.split()
    assert out == keys and keys == config_difference("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py",
                                                     "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py")
    assert tool.main(["--keys-only", str(ROOT / "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py") + "::model.probe=null",
                      str(ROOT / "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py")]) is not None

