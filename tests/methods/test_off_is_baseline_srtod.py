"""SR-TOD off is its baseline (issue 16 item 2): each SR-TOD config with its ONE off override
``model.feature_hook=null`` builds exactly the model of the config it adds SR-TOD to (Faster
R-CNN, RetinaNet, CFINet): the model configs differ only in the ``feature_hook`` slot, the
class is the baseline's own, same parameters, buffers and state-dict keys, the baseline's
weights load strictly, and the losses and detections are bit-equal
(tests/methods/off_baseline.py)."""
import pytest

from .off_baseline import check_off_is_baseline

ROWS = {
    "faster_rcnn": ("srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py", "baselines/faster_rcnn_R18s_fpn_synthetic.py"),
    "retinanet": ("srtod/retinanet_srtod_R18s_fpn_synthetic.py", "baselines/retinanet_R18s_fpn_synthetic.py"),
    "cfinet": ("srtod/cfinet_srtod_R18s_fpn_synthetic.py", "cfinet/cfinet_R18s_fpn_synthetic.py"),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_srtod_off_is_its_detector(row):
    method, baseline = ROWS[row]
    check_off_is_baseline(method, "model.feature_hook=null", baseline, model_keys=["model.feature_hook"])


def test_the_override_is_needed():
    """Control: with the hook kept (reconstruction-only, no DGFE) the check fails."""
    method, baseline = ROWS["faster_rcnn"]
    with pytest.raises(AssertionError):
        check_off_is_baseline(method, "model.feature_hook.dgfe=null", baseline, model_keys=["model.feature_hook"])
