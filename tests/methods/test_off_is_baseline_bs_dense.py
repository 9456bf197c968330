"""Dense Better Sampling off is YOLOX (issue 16 item 2): ``bs_yolox_tiny_p2_synthetic.py`` with its
ONE off override ``model.better_sampling=null`` builds the model of its plain twin
``fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py`` (YOLOX-Tiny, P2-P5 head, CIoU): the model
configs differ only in the class (``BetterSamplingYOLOX``, a ``YOLOX`` subclass) and its now
empty ``better_sampling``; same parameters, buffers and state-dict keys (the SR generator's
``better_sampling.reweighting.*`` gone), the baseline's weights load strictly, and the losses
(ST's targets and SR's weights gone) and detections are bit-equal (tests/methods/off_baseline.py)."""
import pytest

from .off_baseline import check_off_is_baseline

METHOD, BASELINE = "bsdetr/bs_yolox_tiny_p2_synthetic.py", "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py"
MODEL_KEYS = ["model._target_", "model.better_sampling"]


def test_dense_better_sampling_off_is_yolox():
    check_off_is_baseline(METHOD, "model.better_sampling=null", BASELINE, model_keys=MODEL_KEYS)


def test_the_override_is_needed():
    """Control: SR off but ST still on, the check fails on the losses (ST's class targets; no
    extra parameters are left, so only the loss comparison can catch it)."""
    with pytest.raises(AssertionError, match="loss_cls"):
        check_off_is_baseline(METHOD, "model.better_sampling.reweighting=null", BASELINE, model_keys=MODEL_KEYS)
