"""tools/demo.py --slice SIZE --overlap R [--show-slices]."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from sod2.config import get_config, get_config_file
from sod2.inference import slice_windows

REPO = Path(__file__).resolve().parents[2]
CONFIG = get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py")


@pytest.fixture(scope="module")
def demo_main():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    return demo.main


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    DetectionCheckpointer(instantiate(get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py").model),
                          str(d)).save("model")
    return str(d / "model.pth")


def test_demo_slices_and_draws_the_grid(tmp_path, demo_main, weights):
    img = np.random.default_rng(0).integers(0, 256, (150, 260, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), img)
    common = ["--config-file", CONFIG, "--input", str(tmp_path / "big.png"), "--confidence-threshold", "2",
              "--opts", f"train.init_checkpoint={weights}", "train.device=cpu"]
    plain = demo_main(common[:4] + ["--output", str(tmp_path / "a"), "--slice", "128", "--overlap", "0.25"] + common[4:])
    grid = demo_main(common[:4] + ["--output", str(tmp_path / "b"), "--slice", "128", "--overlap", "0.25",
                                   "--show-slices"] + common[4:])
    a, b = cv2.imread(plain[0]), cv2.imread(grid[0])
    assert a.shape == b.shape == (150, 260, 3)
    changed = np.abs(a.astype(int) - b.astype(int)).sum(-1) > 0
    # the outlines of the slices (no detection is drawn: threshold 2), and nothing else
    outline = np.zeros_like(changed)
    for x0, y0, x1, y1 in slice_windows(150, 260, 128, 0.25):
        outline[y0:y1, [x0, x1 - 1]] = outline[[y0, y1 - 1], x0:x1] = True
    assert changed[outline].mean() > 0.9
    near = cv2.dilate(outline.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # 2 px lines
    assert changed[~near].mean() < 0.03  # the slice numbers


OVERLAP = "must be a number in [0, 1)"


@pytest.mark.parametrize("extra,msg", [(["--overlap", "0.3"], "--overlap needs --slice"),
                                       (["--show-slices"], "--show-slices needs --slice"),
                                       (["--slice", "128", "--overlap", "1.5"], "--overlap 1.5: " + OVERLAP),
                                       (["--slice", "128", "--overlap", "1"], "--overlap 1: " + OVERLAP),
                                       (["--slice", "128", "--overlap", "-0.1"], "--overlap -0.1: " + OVERLAP),
                                       (["--slice", "128", "--overlap", "nan"], "--overlap nan: " + OVERLAP),
                                       (["--slice", "128", "--overlap", "x"], "--overlap x: " + OVERLAP),
                                       (["--slice", "0"], "--slice 0: must be a positive integer"),
                                       (["--slice", "-5"], "--slice -5: must be a positive integer"),
                                       (["--slice", "nan"], "--slice nan: must be a positive integer"),
                                       (["--guided", "0.2"], "--guided needs --slice"),
                                       (["--slice", "128", "--guided", "1.5"], "threshold=1.5): a number in [0, 1]"),
                                       (["--slice", "128", "--guided", "--guided-margin", "-4"],
                                        "margin=-4): an integer >= 0")])
def test_demo_refuses_bad_slicing_in_one_line(tmp_path, demo_main, weights, capsys, extra, msg):
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(SystemExit) as e:
        demo_main(["--config-file", CONFIG, "--input", str(tmp_path / "x.png"), "--output", str(tmp_path / "o"),
                   *extra, "--opts", f"train.init_checkpoint={weights}", "train.device=cpu"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # refused before anything is written


def test_demo_guided_outlines_the_slices_that_ran(tmp_path, demo_main, weights):
    """--guided with --show-slices: threshold 0 runs every slice (the plain grid, coloured);
    threshold 0.999 runs none (RPN objectness stays below it), so every outline is grey and
    one pixel wide."""
    img = np.random.default_rng(0).integers(0, 256, (150, 260, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "big.png"), img)
    common = ["--config-file", CONFIG, "--input", str(tmp_path / "big.png"), "--confidence-threshold", "2",
              "--slice", "128", "--overlap", "0.25", "--show-slices", "--opts", f"train.init_checkpoint={weights}",
              "train.device=cpu"]
    grid = cv2.imread(demo_main(common[:4] + ["--output", str(tmp_path / "a")] + common[4:])[0])
    every = cv2.imread(demo_main(common[:4] + ["--output", str(tmp_path / "b"), "--guided", "0"] + common[4:])[0])
    none = cv2.imread(demo_main(common[:4] + ["--output", str(tmp_path / "c"), "--guided", "0.999"] + common[4:])[0])
    plain = cv2.imread(demo_main(common[:4] + ["--output", str(tmp_path / "d")] + common[4:-4] + common[-3:])[0])
    assert np.array_equal(grid, every)
    changed = np.abs(none.astype(int) - plain.astype(int)).sum(-1) > 0
    outline = np.zeros_like(changed)
    for x0, y0, x1, y1 in slice_windows(150, 260, 128, 0.25):
        outline[y0:y1, [x0, x1 - 1]] = outline[[y0, y1 - 1], x0:x1] = True
    assert changed[outline].mean() > 0.9 and not changed[~outline].any()  # 1 px, no numbers
    assert (none[changed] == 128).all()  # grey
