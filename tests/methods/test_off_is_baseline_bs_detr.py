"""Better Sampling on RT-DETR off is RT-DETR (issue 16 item 2): ``bsdetr_r18s_synthetic.py`` with
its ONE off override ``model.criterion.better_sampling=null`` builds the model of its plain twin
``bsdetr_plain_r18s_synthetic.py`` (RT-DETR with RT-DETR's VFL alpha 0.75 / gamma 2.0): the
model configs differ only in the criterion's class (``BetterSamplingCriterion``, a
``SetCriterion`` subclass) and its now empty ``better_sampling`` node; same parameters,
buffers and state-dict keys (the SR generator's ``criterion.better_sampling.reweighting.*``
gone), the baseline's weights load strictly, and the losses and detections are bit-equal
(tests/methods/off_baseline.py)."""
import pytest

from .off_baseline import check_off_is_baseline


def test_better_sampling_off_is_rtdetr():
    check_off_is_baseline("bsdetr/bsdetr_r18s_synthetic.py", "model.criterion.better_sampling=null",
                          "bsdetr/bsdetr_plain_r18s_synthetic.py",
                          model_keys=["model.criterion._target_", "model.criterion.better_sampling"])


def test_the_override_is_needed():
    """Control: without the override the method model is not the baseline (the check can fail)."""
    with pytest.raises(AssertionError):
        check_off_is_baseline("bsdetr/bsdetr_r18s_synthetic.py", "model.criterion.better_sampling.vfl_alpha=0.5",
                              "bsdetr/bsdetr_plain_r18s_synthetic.py",
                              model_keys=["model.criterion._target_", "model.criterion.better_sampling"])
