"""tools/demo.py (images, folders, videos, datasets with ground truth) and
tools/visualize_data.py (annotations and data-loader output, ignore regions drawn)."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate

from sod2.config import get_config, get_config_file

REPO = Path(__file__).resolve().parents[2]
CONFIG = get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A checkpoint of the synthetic baseline (random weights: these tests check drawing)."""
    d = tmp_path_factory.mktemp("w")
    model = instantiate(get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py").model)
    DetectionCheckpointer(model, str(d)).save("model")
    return str(d / "model.pth")


def _run(*args):
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_demo_on_images_folder_and_video(tmp_path, weights, synthetic_dataset):
    from detectron2.data import DatasetCatalog

    val = DatasetCatalog.get("sod2_synthetic_val")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for d in val[:2]:
        img = cv2.imread(d["file_name"])
        cv2.imwrite(str(folder / Path(d["file_name"]).name), img)
    gray16 = (cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 200)
    cv2.imwrite(str(tmp_path / "thermal16.png"), gray16)
    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (256, 256))
    for _ in range(3):
        w.write(img)
    w.release()
    out = tmp_path / "out"
    _run(REPO / "tools" / "demo.py", "--config-file", CONFIG, "--input", folder, tmp_path / "thermal16.png",
         video, "--output", out, "--confidence-threshold", "0.5", "--scale", "2",
         "--opts", f"train.init_checkpoint={weights}", "train.device=cpu")
    # named after the inputs' paths relative to their common folder, extension included
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == sorted([f"imgs/{Path(val[0]['file_name']).name}.png",
                            f"imgs/{Path(val[1]['file_name']).name}.png",
                            "thermal16.png.png", "clip.mp4.mp4"])
    vis = cv2.imread(str(out / "thermal16.png.png"))
    assert vis.shape[:2] == (512, 512)  # --scale 2
    cap = cv2.VideoCapture(str(out / "clip.mp4.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_demo_on_dataset_with_ground_truth(tmp_path, weights, synthetic_dataset):
    out = tmp_path / "ds"
    _run(REPO / "tools" / "demo.py", "--config-file", CONFIG, "--dataset", "sod2_synthetic_val",
         "--max-images", "2", "--with-ground-truth", "--output", out,
         "--opts", f"train.init_checkpoint={weights}", "train.device=cpu")
    files = sorted(out.iterdir())
    assert len(files) == 2
    vis = cv2.imread(str(files[0]))
    assert vis.shape[0] == 256 and vis.shape[1] == 2 * 256 + 8  # predictions | ground truth


def test_demo_missing_input(tmp_path, weights):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", CONFIG,
                           "--input", str(tmp_path / "nope.jpg"), "--output", str(tmp_path / "o"),
                           "--opts", f"train.init_checkpoint={weights}"], capture_output=True, text=True)
    assert proc.returncode == 2 and "nope.jpg: no such file or folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_same_names_and_unreadable_images(tmp_path, weights, synthetic_dataset):
    """a/x.jpg and b/x.jpg are both drawn; an unreadable image is skipped, named, counted,
    and the images after it are still drawn."""
    from detectron2.data import DatasetCatalog

    img = cv2.imread(DatasetCatalog.get("sod2_synthetic_val")[0]["file_name"])
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.jpg"), img)
    (tmp_path / "a" / "0_broken.jpg").write_bytes(b"")  # sorted first in its folder
    cv2.imwrite(str(tmp_path / "a" / "x.png"), img)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", CONFIG,
                           "--input", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(out),
                           "--opts", f"train.init_checkpoint={weights}", "train.device=cpu"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["a/x.jpg.png", "a/x.png.png", "b/x.jpg.png"]
    assert "wrote 3 visualization(s)" in proc.stdout
    assert "0_broken.jpg" in proc.stderr and "1 input(s) could not be read" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_tools_refuse_bad_names_in_one_line(tmp_path, weights):
    def run(*args):
        proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
        return proc.stderr.strip()

    err = run(REPO / "tools" / "visualize_data.py", "--dataset", "hituav_vall", "--output", tmp_path / "v")
    assert err.startswith("error: dataset 'hituav_vall' is not registered (did you mean 'hituav_val'")
    assert "\n" not in err
    (tmp_path / "f").write_text("")
    err = run(REPO / "tools" / "visualize_data.py", "--dataset", "hituav_val", "--output", tmp_path / "f")
    assert "--output" in err and "is a file" in err
    err = run(REPO / "tools" / "demo.py", "--config-file", tmp_path / "missing.py", "--dataset",
              "sod2_synthetic_val", "--output", tmp_path / "o")
    assert err == f"error: --config-file {tmp_path / 'missing.py'}: no such file"
    err = run(REPO / "tools" / "demo.py", "--config-file", CONFIG, "--dataset", "sod2_synthetic_val",
              "--output", tmp_path / "o", "--opts", f"train.init_checkpoint={weights}", "train.devise=cpu")
    assert "no key 'train.devise' (did you mean 'train.device'?)" in err


def test_visualize_data_annotations(tmp_path, hituav_datasets):
    out = tmp_path / "gt"
    _run(REPO / "tools" / "visualize_data.py", "--dataset", "hituav_val", "--output", out, "--max-images", "2")
    files = sorted(out.iterdir())
    assert len(files) == 2 and cv2.imread(str(files[0])).shape == (512, 640, 3)
    # an image with a DontCare region is drawn with its dashed grey "ignore" box
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sod2.utils.visualization import draw_ground_truth

    rec = next(d for d in DatasetCatalog.get("hituav_val") if any(a["category_id"] < 0 for a in d["annotations"]))
    blank = np.zeros((rec["height"], rec["width"], 3), np.uint8)
    drawn = draw_ground_truth(blank, {"annotations": [a for a in rec["annotations"] if a["category_id"] < 0]},
                              MetadataCatalog.get("hituav_val"), labels=False)
    ys, xs = np.nonzero(drawn.sum(2))
    assert len(ys) and (drawn[ys, xs].max(1) - drawn[ys, xs].min(1) < 30).all()  # grey


def test_visualize_data_loader_output(tmp_path, synthetic_dataset):
    out2 = tmp_path / "loader"
    _run(REPO / "tools" / "visualize_data.py", "--dataset", "sod2_synthetic_train", "--source", "dataloader",
         "--config-file", CONFIG, "--output", out2, "--max-images", "1")
    assert len(list(out2.iterdir())) == 1


def test_demo_shows_srtod_reconstruction(tmp_path, synthetic_dataset):
    srtod = get_config_file("srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py")
    d = tmp_path / "w"
    d.mkdir()
    model = instantiate(get_config("srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py").model)
    DetectionCheckpointer(model, str(d)).save("m")
    out = tmp_path / "rec"
    _run(REPO / "tools" / "demo.py", "--config-file", srtod, "--dataset", "sod2_synthetic_val",
         "--max-images", "1", "--show-reconstruction", "--confidence-threshold", "0.9", "--output", out,
         "--opts", f"train.init_checkpoint={d / 'm.pth'}", "train.device=cpu")
    vis = cv2.imread(str(next(out.iterdir())))
    assert vis.shape == (256, 3 * 256 + 2 * 8, 3)  # detections | reconstruction | difference map
    diff = vis[:, 2 * (256 + 8):]
    assert set(np.unique(diff)) <= {0, 127, 128, 255}  # a binary (or exactly-at-threshold) map
    # a plain model cannot show a reconstruction
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", CONFIG,
                           "--dataset", "sod2_synthetic_val", "--max-images", "1", "--show-reconstruction",
                           "--output", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode != 0 and "SR-TOD" in proc.stderr


def test_foreground_map_by_hand():
    from sod2.utils.visualization import draw_heatmap, foreground_map

    p2 = np.zeros((2, 3), np.float32)
    p2[1, 2] = 0.25  # covers input rows 4-7, cols 8-11 at stride 4
    p3 = np.array([[0.5, 0.0]], np.float32)  # covers rows 0-7, cols 0-7 at stride 8
    m = foreground_map([p2, p3], [4, 8], input_hw=(6, 10), orig_hw=(6, 10))
    assert m.shape == (6, 10)
    assert m[0, 0] == 0.5 and m[5, 7] == 0.5  # the stride-8 cell wins where it is higher
    assert m[4, 8] == 0.25 and m[0, 8] == 0.0 and m[5, 9] == 0.25
    # the input is cropped to the image, then resized to the original size
    assert foreground_map([p2, p3], [4, 8], input_hw=(6, 10), orig_hw=(12, 20))[11, 19] == 0.25
    img = np.zeros((6, 10, 3), np.uint8)
    heat = draw_heatmap(img, m)
    assert heat.shape == img.shape and heat[0, 0, 0] > heat[0, 9, 0]  # red where p = 0.5


def test_demo_shows_foreground_before_and_after_probing(tmp_path, synthetic_dataset):
    cfg_file = get_config_file("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py")
    d = tmp_path / "w"
    d.mkdir()
    model = instantiate(get_config("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py").model)
    with torch.no_grad():  # every refined token gets logit 3 whatever the random features
        model.probe.pred.weight.zero_()
        model.probe.pred.bias.fill_(3.0)
    DetectionCheckpointer(model, str(d)).save("m")
    out = tmp_path / "fg"
    _run(REPO / "tools" / "demo.py", "--config-file", cfg_file, "--dataset", "sod2_synthetic_val",
         "--max-images", "1", "--show-foreground", "--output", out,
         "--opts", f"train.init_checkpoint={d / 'm.pth'}", "train.device=cpu")
    vis = cv2.imread(str(next(out.iterdir())))
    assert vis.shape == (256, 3 * 256 + 2 * 8, 3)  # detections | before | after
    before, after = vis[:, 256 + 8: 2 * 256 + 8], vis[:, 2 * (256 + 8):]
    # the refined tokens (probability sigmoid(3) = 0.95) turn red in the "after" map only
    red = lambda x: ((x[..., 2] > 200) & (x[..., 0] < 80)).sum()  # noqa: E731  (BGR)
    assert red(after) > red(before)
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "demo.py"), "--config-file", CONFIG,
                           "--dataset", "sod2_synthetic_val", "--max-images", "1", "--show-foreground",
                           "--output", str(tmp_path / "x")], capture_output=True, text=True)
    assert proc.returncode != 0 and "YOLOX" in proc.stderr
