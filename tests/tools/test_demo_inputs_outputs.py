"""tools/demo.py refuses, in one line with exit status 2 and before any image runs, inputs
and outputs it cannot use (a folder without images, an output it cannot write, an output
image path taken by a folder); the drawing of a large image stays near the image's size."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.inference.test_demo_slicing import CONFIG, weights  # noqa: F401 (a fixture)
from tests.modules import tool_module

REPO = Path(__file__).resolve().parents[2]


def _demo(weights, *args):  # noqa: F811
    return tool_module("demo").main(["--config-file", CONFIG, *map(str, args), "--opts",
                                     f"train.init_checkpoint={weights}", "train.device=cpu"])


def _refused(capsys, weights, *args):  # noqa: F811
    with pytest.raises(SystemExit) as e:
        _demo(weights, *args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def _image(path, h=40, w=60):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def test_folder_without_images_is_refused(tmp_path, capsys, weights):  # noqa: F811
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no image here")
    err = _refused(capsys, weights, "--input", tmp_path / "empty", "--output", tmp_path / "o")
    assert err.startswith(f"error: {tmp_path / 'empty'}: no images in this folder")
    assert not (tmp_path / "o").exists()


def test_output_path_taken_by_a_folder_is_refused_before_drawing(tmp_path, capsys, weights):  # noqa: F811
    _image(tmp_path / "in" / "a.jpg")
    _image(tmp_path / "in" / "b.jpg")
    (tmp_path / "o" / "b.jpg.png").mkdir(parents=True)  # where b's drawing would go
    err = _refused(capsys, weights, "--input", tmp_path / "in", "--output", tmp_path / "o")
    assert err == f"error: {tmp_path / 'o' / 'b.jpg.png'}: an output image would be written there, but it is an " \
                  "existing folder"
    assert sorted(os.listdir(tmp_path / "o")) == ["b.jpg.png"]  # a.jpg (before b) was not drawn either


def test_output_under_a_file_or_not_writable_is_refused(tmp_path, capsys, weights):  # noqa: F811
    _image(tmp_path / "a.jpg")
    (tmp_path / "f").write_text("")
    err = _refused(capsys, weights, "--input", tmp_path / "a.jpg", "--output", tmp_path / "f")
    assert err == f"error: --output {tmp_path / 'f'} is a file; give a folder"
    err = _refused(capsys, weights, "--input", tmp_path / "a.jpg", "--output", tmp_path / "f" / "sub")
    assert err == f"error: --output {tmp_path / 'f' / 'sub'}: {tmp_path / 'f'} is a file, so the folder cannot be made"
    if os.geteuid() == 0:  # root writes in a read-only-mode folder: use a read-only file system
        if not os.path.isdir("/sys"):
            pytest.skip("no read-only folder for root")
        locked, where = Path("/sys/sod2_demo_out"), "/sys"
    else:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
        locked, where = tmp_path / "ro" / "out", str(tmp_path / "ro")
    err = _refused(capsys, weights, "--input", tmp_path / "a.jpg", "--output", locked)
    assert err.startswith(f"error: --output {locked}: cannot write in {where} (")
    assert not locked.exists()


DRAW_MEMORY = r"""
import resource, sys
import numpy as np, torch
from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances
from sod2.utils.visualization import draw_ground_truth, draw_predictions
h, w = 3000, 4000
img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
meta = MetadataCatalog.get("__demo_memory"); meta.thing_classes = ["a", "b"]
none = Instances((h, w), pred_boxes=Boxes(torch.zeros(0, 4)), scores=torch.zeros(0),
                 pred_classes=torch.zeros(0, dtype=torch.int64))
two = Instances((h, w), pred_boxes=Boxes(torch.tensor([[10., 10., 50., 40.], [3000., 2000., 3010., 2012.]])),
                scores=torch.tensor([0.9, 0.8]), pred_classes=torch.tensor([0, 1]))
rec = {"annotations": [{"bbox": [5, 5, 20, 20], "bbox_mode": 1, "category_id": -1, "ignore": 1}]}
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
draw_predictions(img[:64, :64], two, meta)  # matplotlib's fonts and caches load here
base = peak()
outs = [draw_predictions(img, none, meta).shape, draw_predictions(img, two, meta).shape,
        draw_ground_truth(img, rec, meta).shape]
print(outs[0], outs[1], outs[2], (peak() - base) / img.nbytes)
"""


def test_drawing_a_large_image_stays_near_its_size():
    """Drawing a 4000 x 3000 image (no detection, two, ground truth) raises the peak memory
    by less than 4x the image's bytes (measured 2.4x: the figure's RGBA buffer and the
    result; Detectron2's Visualizer: about 40x)."""
    proc = subprocess.run([sys.executable, "-c", DRAW_MEMORY], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    *shapes, ratio = proc.stdout.split(")")
    assert proc.stdout.count("(3000, 4000, 3)") == 3
    assert float(ratio) < 4.0, proc.stdout
