"""tools/split_images.py refuses a --fill-ignore outside 0-255 (which uint8 would wrap: 300
-> 44) and a --split-name that is empty or a path, in one line with exit status 2, before
anything is written; values at the edges of the range are painted as given."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.modules import tool_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def dataset(tmp_path):
    """One 60 x 60 image with a class-agnostic ignore region [0, 0, 20, 20] and one car."""
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.full((60, 60, 3), 100, np.uint8))
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 60}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [30, 30, 10, 10], "area": 100},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20], "area": 400}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "ignore"}]}))
    return ["--json", str(tmp_path / "ann.json"), "--image-root", str(tmp_path / "img"), "--classes", "car",
            "--output", str(tmp_path / "out"), "--patch-size", "60", "--stride", "60"]


def _refused(capsys, args):
    with pytest.raises(SystemExit) as e:
        tool_module("split_images").main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("values", [["300"], ["-20"], ["1e6"], ["nan"], ["inf"], ["0", "0"], ["0", "300", "0"]])
def test_fill_ignore_outside_0_255_is_refused(tmp_path, capsys, dataset, values):
    err = _refused(capsys, dataset + ["--split-name", "val", "--fill-ignore", *values])
    assert err.startswith("error: --fill-ignore ") and "each in 0-255" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("values,bgr", [(["255"], (255, 255, 255)), (["0"], (0, 0, 0)),
                                        (["10", "20", "255"], (10, 20, 255)), ([], (100, 100, 100))])
def test_fill_ignore_in_range_is_painted(tmp_path, dataset, values, bgr):
    tool_module("split_images").main(dataset + ["--split-name", "val", "--fill-ignore", *values])
    patch = cv2.imread(str(tmp_path / "out" / "val" / "a.png_0.png"))
    assert (patch[:20, :20] == bgr).all()  # the ignore region
    assert (patch[20:, 20:] == 100).all()  # the rest, the car included


@pytest.mark.parametrize("name", ["", " ", ".", "..", "../x", "a/b", "/abs", ".hidden"])
def test_split_name_must_be_a_plain_name(tmp_path, capsys, dataset, name):
    err = _refused(capsys, dataset + ["--split-name", name])
    assert err.startswith(f"error: --split-name {name!r}: give a plain name")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists() and not (tmp_path / "x.json").exists()


def test_refusal_as_a_user_sees_it(tmp_path, dataset):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "split_images.py"), *dataset,
                           "--split-name", "../x", "--fill-ignore", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "error: --split-name '../x': give a plain name, not empty, without '/' and not starting with '.' "
        "(the folder <output>/<name> and the file <output>/<name>.json are written)")
    assert not os.path.exists(tmp_path / "x") and not (tmp_path / "out").exists()
