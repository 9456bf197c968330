"""CFINet off is its baseline (issue 16 item 2): ``cfinet_R18s_fpn_synthetic.py`` with its ONE
off override ``model.cfinet=null`` builds the model of its plain twin
``cfinet_plain_R18s_fpn_synthetic.py`` (Faster R-CNN with CFINet's settings): the model
configs differ only in the meta-architecture (``CFINetRCNN``, a ``SOD2GeneralizedRCNN``
subclass), the ROI heads' class (``FeatureImitationROIHeads``, a ``StandardROIHeads``
subclass, without imitation) and the now empty ``cfinet`` node; same parameters, buffers and
state-dict keys (CRPN and the imitation gone, the twin's RPN kept), the baseline's weights
load strictly, and the losses and detections are bit-equal (tests/methods/off_baseline.py)."""
import pytest

from .off_baseline import check_off_is_baseline

METHOD, BASELINE = "cfinet/cfinet_R18s_fpn_synthetic.py", "cfinet/cfinet_plain_R18s_fpn_synthetic.py"
KEYS = ["model._target_", "model.roi_heads._target_", "model.cfinet"]


def test_cfinet_off_is_faster_rcnn():
    check_off_is_baseline(METHOD, "model.cfinet=null", BASELINE, model_keys=KEYS)


@pytest.mark.parametrize("override", ["model.cfinet.crpn=null", "model.cfinet.imitation=null"])
def test_each_part_alone_is_not_the_baseline(override):
    """Control: the partial ablations (+FI, +CRPN) keep a part of CFINet, so the check fails."""
    with pytest.raises(AssertionError):
        check_off_is_baseline(METHOD, override, BASELINE, model_keys=KEYS)
