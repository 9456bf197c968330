"""Foreground Probing off is YOLOX (issue 16 item 2): ``fgprobe_yolox_tiny_p2_synthetic.py`` with its
ONE off override ``model.probe=null`` builds the model of its plain twin
``fgprobe_plain_yolox_tiny_p2_synthetic.py`` (YOLOX-Tiny, P2-P5 head, CIoU): the model configs
differ only in the class (``FGProbeYOLOX``, a ``YOLOX`` subclass) and its now empty ``probe``;
same parameters, buffers and state-dict keys (the probe's ``probe.*`` gone), the baseline's
weights load strictly, and the losses and detections are bit-equal
(tests/methods/off_baseline.py)."""
import pytest

from .off_baseline import check_off_is_baseline

METHOD, BASELINE = "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py", "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py"
MODEL_KEYS = ["model._target_", "model.probe"]


def test_foreground_probing_off_is_yolox():
    check_off_is_baseline(METHOD, "model.probe=null", BASELINE, model_keys=MODEL_KEYS)


def test_the_override_is_needed():
    """Control: with the probe on (any other override) the check fails (extra ``probe.*``
    parameters and the refined objectness)."""
    with pytest.raises(AssertionError, match="parameters differ"):
        check_off_is_baseline(METHOD, "model.probe.num_tokens=20", BASELINE, model_keys=MODEL_KEYS)
