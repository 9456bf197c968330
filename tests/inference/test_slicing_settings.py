"""Every sliced-inference setting is checked when the config is loaded (or the wrapper is
built), with one UserError line naming the key as the user wrote it and what it may be; a
grid of thousands of slices is warned about, with its count, before the first slice runs."""
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sod2.config import get_config_file
from sod2.engine.lazy_train import load_config
from sod2.errors import UserError
from sod2.inference import SlicedInference, with_slicing
from sod2.inference.sliced import MANY_SLICES

from .fake_detector import FakeDetector

REPO = Path(__file__).resolve().parents[2]
PLAIN = get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py")
SLICED = get_config_file("cfinet/cfinet_R50_fpn_sodad_sliced.py")  # with_slicing(size=800, stride=650)

OVERLAP = "must be a number in [0, 1) (the fraction of a slice shared with its neighbour), or a (y, x) pair of them"
SIZE = "must be a positive integer or a (height, width) pair of positive integers (pixels)"


@pytest.mark.parametrize("override,message", [
    ("+slicing.size=0", "slicing.size=0: " + SIZE),
    ("+slicing.size=-800", "slicing.size=-800: " + SIZE),
    ("+slicing.size=800.5", "slicing.size=800.5: " + SIZE),
    ("+slicing.size=[800]", "slicing.size=[800]: " + SIZE),
    ("+slicing.merge=soft", "slicing.merge='soft': must be one of nms, greedynmm"),
    ("+slicing.metric=giou", "slicing.metric='giou': must be one of iou, ios"),
    ("+slicing.threshold=nan", "slicing.threshold=nan: must be a number in (0, 1]"),
    ("+slicing.threshold=0", "slicing.threshold=0: must be a number in (0, 1]"),
    ("+slicing.overlap=1", "slicing.overlap=1: " + OVERLAP),
    ("+slicing.overlap=-0.1", "slicing.overlap=-0.1: " + OVERLAP),
    ("+slicing.overlap=nan", "slicing.overlap=nan: " + OVERLAP),
    ("+slicing.stride=900", "slicing.stride=900: must be at most the slice size 96 (bands between slices would "
                            "be in no slice)"),
    ("+slicing.batch_size=0", "slicing.batch_size=0: must be a positive integer, or None for the device's default"),
    ("+slicing.full_image=yes", "slicing.full_image='yes': must be True or False"),
    ("+slicing.max_detections=0", "slicing.max_detections=0: must be a positive integer, or None for no limit"),
    ("+slicing.pad_value=inf", "slicing.pad_value=inf: must be a finite number, or None for no padding"),
])
def test_slicing_block_values(override, message):
    size = [] if override.startswith("+slicing.size") else ["+slicing.size=96"]
    with pytest.raises(UserError) as e:
        load_config(PLAIN, size + [override], warn=False)
    assert str(e.value) == message


@pytest.mark.parametrize("override,message", [
    ("model.merge=soft", "model.merge='soft': must be one of nms, greedynmm"),
    ("model.match_threshold=nan", "model.match_threshold=nan: must be a number in (0, 1]"),
    ("model.slice_size=0", "model.slice_size=0: " + SIZE),
    ("model.stride=0", "model.stride=0: must be a positive integer or a (height, width) pair of positive "
                       "integers (pixels), or None to use overlap"),
    ("model.overlap=1.0", "model.overlap=1.0: " + OVERLAP + "; a stride replaces it"),
    ("model.max_detections=-3", "model.max_detections=-3: must be a positive integer, or None for no limit"),
])
def test_sliced_config_values(override, message):
    load_config(SLICED, [], warn=False)  # as shipped: fine
    with pytest.raises(UserError) as e:
        load_config(SLICED, [override], warn=False)
    assert str(e.value) == message


def test_constructor_and_with_slicing_values():
    with pytest.raises(UserError, match=r"^SlicedInference\(match_threshold=nan\): must be a number in \(0, 1\]$"):
        SlicedInference(FakeDetector(), match_threshold=float("nan"))
    with pytest.raises(UserError, match=r"^SlicedInference\(merge='soft'\): must be one of nms, greedynmm$"):
        SlicedInference(FakeDetector(), merge="soft")
    with pytest.raises(UserError, match=r"^SlicedInference\(enabled='false'\): must be True or False$"):
        SlicedInference(FakeDetector(), enabled="false")
    with pytest.raises(UserError, match=r"^with_slicing\(size=0\): must be a positive integer"):
        with_slicing(None, size=0)
    ok = SlicedInference(FakeDetector(), slice_size=(96, 64), overlap=(0.25, 0.5), pad_value=0)
    assert (ok.slice_h, ok.slice_w, ok.stride_y, ok.stride_x) == (96, 64, 72, 32)


@pytest.mark.parametrize("override", ["+slicing.size=0", "+slicing.threshold=nan"])
def test_trainer_eval_only_refuses_in_one_line(tmp_path, override):
    """tools/lazyconfig_train_net.py --eval-only: exit status 2 and one line, before any model is built."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "lazyconfig_train_net.py"), "--config-file", PLAIN,
                           "--eval-only", override, "+slicing.merge=nms", f"train.output_dir={tmp_path / 'o'}",
                           "train.device=cpu"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    key = override[1:].partition("=")[0]
    assert lines[-1].startswith(f"error: {key}=") and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


class _Refuses(FakeDetector):
    def forward(self, batched_inputs):
        raise AssertionError("the model ran before the warning")


def test_thousands_of_slices_warn_with_the_count_first(caplog):
    """--slice 128 --overlap 0.99 on 256 px: stride 2, 65 x 65 = 4225 slices, warned before
    the first model call; a grid under the threshold is not warned about."""
    sliced = SlicedInference(_Refuses(), slice_size=128, overlap=0.99).eval()
    with caplog.at_level(logging.WARNING, logger="sod2.inference.sliced"):
        with pytest.raises(AssertionError, match="before the warning"):
            sliced([{"image": torch.zeros(3, 256, 256)}])
    (msg,) = [r.getMessage() for r in caplog.records if r.name == "sod2.inference.sliced"]
    assert "a 256x256 image is cut into 4225 slices of 128x128 px (stride 2x2)" in msg
    caplog.clear()
    few = SlicedInference(FakeDetector(), slice_size=128, overlap=0.2).eval()
    with caplog.at_level(logging.WARNING, logger="sod2.inference.sliced"):
        few([{"image": torch.zeros(3, 256, 256)}])
    assert not caplog.records and len(few.windows(256, 256)) == 9 < MANY_SLICES
