"""SR-TOD's configs read as diffs (issue 16 item 3): every SR-TOD config is the config of the
detector it adds SR-TOD to (its plain twin ``*_srtod_plain_*``, or the synthetic baseline /
CFINet config) plus ``model.feature_hook`` and nothing else (data, schedule, optimizer and the
rest of the model resolve to the same values); the LIGHT variants add the head's reduction."""
import pytest

from sod2.config import configs_root

from ...projects.paper_helpers import config_difference

SYNTHETIC = {
    "faster_rcnn_srtod_R18s_fpn_synthetic": "baselines/faster_rcnn_R18s_fpn_synthetic.py",
    "retinanet_srtod_R18s_fpn_synthetic": "baselines/retinanet_R18s_fpn_synthetic.py",
    "cfinet_srtod_R18s_fpn_synthetic": "cfinet/cfinet_R18s_fpn_synthetic.py",
}


def _pairs():
    out = []
    for path in sorted((configs_root() / "srtod").glob("*_srtod_*.py")):
        stem = path.stem
        if "_plain_" in stem or "_light_" in stem:
            continue
        twin = SYNTHETIC.get(stem, f"srtod/{stem.replace('_srtod_', '_srtod_plain_', 1)}.py")
        out.append((f"srtod/{path.name}", twin))
    return out


def test_every_srtod_config_has_a_twin():
    pairs = _pairs()
    assert len(pairs) == 16
    assert all((configs_root() / twin).is_file() for _, twin in pairs), pairs


@pytest.mark.parametrize("config,twin", _pairs())
def test_srtod_config_is_its_twin_plus_the_hook(config, twin):
    assert config_difference(config, twin) == ["model.feature_hook"]


@pytest.mark.parametrize("light,full", [("faster_rcnn_srtod_light_R18s_fpn_synthetic", "faster_rcnn_srtod_R18s_fpn_synthetic"),
                                        ("faster_rcnn_srtod_light_R50_fpn_visdrone_1x", "faster_rcnn_srtod_R50_fpn_visdrone_1x")])
def test_light_variant_only_reduces_the_head(light, full):
    assert config_difference(f"srtod/{light}.py", f"srtod/{full}.py") == ["model.feature_hook.head.reduce_to"]
