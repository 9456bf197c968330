"""SODDatasetMapper (image formats, ignore handling) and patch splitting."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import detectron2.data.transforms as T

from sod2.data.datasets.common import IGNORE_REGION, make_annotation
from sod2.data.io import DataFormatError, read_image
from sod2.data.mapper import SODDatasetMapper, fill_ignore_regions
from sod2.data.split import iter_patches, patch_origins, split_record

REPO = Path(__file__).resolve().parents[2]


def _record(path, w, h, annos):
    return {"file_name": str(path), "image_id": 1, "width": w, "height": h, "annotations": annos}


@pytest.mark.parametrize("kind", ["color", "gray", "gray16"])
def test_read_image_formats(tmp_path, kind):
    rng = np.random.default_rng(0)
    img = {"color": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
           "gray": rng.integers(0, 256, (20, 30), dtype=np.uint8),
           "gray16": rng.integers(1000, 5000, (20, 30), dtype=np.uint16)}[kind]
    p = tmp_path / "x.png"
    cv2.imwrite(str(p), img)
    out = read_image(str(p), "RGB")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    if kind == "gray16":  # stretched from the image's own range
        assert out.min() == 0 and out.max() == 255
        lo, hi = img.min(), img.max()
        assert np.array_equal(out[..., 0], np.rint((img - lo) * (255.0 / (hi - lo))).astype(np.uint8))
    if kind == "color":
        assert np.array_equal(read_image(str(p), "BGR"), img)


def test_read_image_errors(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        read_image(str(tmp_path / "missing.png"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataFormatError, match=r"bad\.jpg.*cannot decode"):
        read_image(str(bad))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match="cannot decode"):
        read_image(str(empty))


def test_mapper_keeps_ignored_apart(tmp_path):
    img = np.full((40, 60, 3), 100, np.uint8)
    img[:, :, 2] = 200
    cv2.imwrite(str(tmp_path / "a.png"), img)
    annos = [make_annotation([2, 3, 10, 8], 1), make_annotation([30, 10, 5, 5], 0, ignore=True),
             make_annotation([20, 0, 30, 30], IGNORE_REGION, ignore=True),
             make_annotation([25, 5, 6, 6], 0)]
    rec = _record(tmp_path / "a.png", 60, 40, annos)
    m = SODDatasetMapper(True, augmentations=[T.RandomFlip(prob=1.0)], image_format="BGR")
    out = m(rec)
    inst, ign = out["instances"], out["ignore_instances"]
    assert inst.gt_classes.tolist() == [1, 0]
    # horizontal flip: x -> 60 - x
    assert inst.gt_boxes.tensor[0].tolist() == pytest.approx([48, 3, 58, 11])
    assert ign.gt_classes.tolist() == [0, IGNORE_REGION]
    assert ign.gt_boxes.tensor[1].tolist() == pytest.approx([10, 0, 40, 30])
    test = SODDatasetMapper(False, augmentations=[], image_format="RGB")(rec)
    assert "instances" not in test and "annotations" not in test
    assert test["image"].shape == (3, 40, 60) and test["image"][0, 0, 0].item() == 200  # RGB order


def test_fill_ignore_regions_spares_objects():
    img = np.full((20, 20, 3), 50, np.uint8)
    img[0:10, 0:10] = 250
    annos = [make_annotation([0, 0, 10, 10], IGNORE_REGION, ignore=True), make_annotation([2, 2, 3, 3], 0)]
    out = fill_ignore_regions(img, annos, value=[7, 7, 7])
    assert (out[0, 0] == 7).all() and (out[9, 9] == 7).all()
    assert (out[3, 3] == 250).all()  # inside the object box
    assert (out[15, 15] == 50).all()  # outside the region
    assert np.array_equal(fill_ignore_regions(img, annos[1:]), img)  # no region: unchanged


def test_patch_origins():
    assert patch_origins(1920, 800, 650) == [0, 650, 1120]
    assert patch_origins(800, 800, 650) == [0]
    assert patch_origins(500, 800, 650) == [0]
    assert patch_origins(1450, 800, 650) == [0, 650]
    assert patch_origins(1451, 800, 650) == [0, 650, 651]
    with pytest.raises(ValueError):
        patch_origins(100, 0, 10)


def test_split_record_rules():
    annos = [make_annotation([90, 10, 20, 10], 0),   # cut by the border of patch 1 at x=100: half left
             make_annotation([95, 30, 20, 10], 1),   # 25% in patch 1 -> ignored there
             make_annotation([100, 50, 10, 10], 0),  # touches patch 1's border only
             make_annotation([0, 0, 30, 30], IGNORE_REGION, ignore=True)]
    rec = {"image_id": 5, "file_name": "f", "width": 180, "height": 100, "annotations": annos}
    plan = dict(split_record(rec, patch_size=100, stride=80))
    assert sorted(plan) == [(0, 0), (80, 0)]
    p0 = plan[(0, 0)]
    boxes = {(a["category_id"], tuple(np.round(a["bbox"], 3)), a["ignore"]) for a in p0}
    assert (0, (90.0, 10.0, 10.0, 10.0), 0) in boxes            # 50% kept: an object
    assert (1, (95.0, 30.0, 5.0, 10.0), 1) in boxes             # 25% kept: ignored
    assert not any(a["bbox"][0] == 100 for a in p0)             # edge-touching box dropped
    assert any(a["category_id"] == IGNORE_REGION for a in p0)
    p1 = plan[(80, 0)]
    assert (0, (10.0, 10.0, 20.0, 10.0), 0) in {(a["category_id"], tuple(np.round(a["bbox"], 3)), a["ignore"]) for a in p1}
    # training mode: extent cut to the annotations (max int(x)+int(w) = 115, + 5) and only
    # patches with objects
    train = split_record(rec, patch_size=100, stride=80, train_mode=True)
    assert [o for o, _ in train] == [(0, 0), (20, 0)]
    empty = dict(rec, annotations=[])
    assert split_record(empty, 100, 80, train_mode=True) == []
    assert len(split_record(empty, 100, 80)) == 2


def test_iter_patches_pads_and_fills():
    img = np.full((60, 70, 3), 200, np.uint8)
    rec = {"image_id": 1, "file_name": "f", "width": 70, "height": 60, "annotations": [
        make_annotation([0, 0, 20, 20], IGNORE_REGION, ignore=True), make_annotation([5, 5, 4, 4], 0)]}
    (patch, d), = list(iter_patches(rec, img, patch_size=100, stride=80, fill_ignore=[0, 0, 0], pad_value=9))
    assert patch.shape == (100, 100, 3)
    assert (patch[80, 80] == 9).all()           # padding
    assert (patch[1, 1] == 0).all()             # painted region
    assert (patch[6, 6] == 200).all()           # object inside the region kept
    assert d["patch"] == {"image_id": 1, "file_name": "f", "origin": [0, 0], "width": 70, "height": 60}
    with pytest.raises(ValueError, match="annotation says"):
        list(iter_patches(dict(rec, width=71), img))


def test_split_images_cli(tmp_path):
    rng = np.random.default_rng(0)
    images, anns = [], []
    (tmp_path / "img").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), rng.integers(0, 255, (300, 420, 3), dtype=np.uint8))
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 420, "height": 300})
        for k in range(5):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1 + k % 2,
                         "bbox": [float(40 + 70 * k), float(30 + 40 * k), 12.0, 9.0], "area": 108.0})
        anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500})
    cats = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}, {"id": 3, "name": "ignore"}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    out = tmp_path / "patches"
    cmd = [sys.executable, str(REPO / "tools" / "split_images.py"), "--json", str(tmp_path / "ann.json"),
           "--image-root", str(tmp_path / "img"), "--output", str(out), "--split-name", "val",
           "--patch-size", "200", "--stride", "150", "--classes", "car", "person"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "val.json").read_text())
    # 420 wide -> origins 0, 150, 220; 300 high -> 0, 100: 6 patches per image
    assert len(data["images"]) == 12
    assert all((out / "val" / im["file_name"]).exists() for im in data["images"])
    assert data["images"][1]["patch"]["origin"] == [0, 100]
    assert {c["name"] for c in data["categories"]} == {"car", "person"}
    # a failing run (unreadable image) leaves the previous output untouched and no temp files
    before = sorted(p.name for p in out.iterdir())
    (tmp_path / "img" / "1.png").write_bytes(b"broken")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0 and "1.png" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == before
    assert len(json.loads((out / "val.json").read_text())["images"]) == 12


def _split_cli(tmp_path, files, *extra):
    """Run tools/split_images.py on ``files`` (path relative to img/ -> BGR image), one
    object box per image; return (process, output folder)."""
    images, anns = [], []
    for i, (rel, img) in enumerate(sorted(files.items())):
        p = tmp_path / "img" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(p), img)
        h, w = img.shape[:2]
        images.append({"id": i + 1, "file_name": rel, "width": w, "height": h})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100})
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                   "categories": [{"id": 1, "name": "car"}]}))
    out = tmp_path / "patches"
    cmd = [sys.executable, str(REPO / "tools" / "split_images.py"), "--json", str(tmp_path / "ann.json"),
           "--image-root", str(tmp_path / "img"), "--output", str(out), "--split-name", "val", *extra]
    return subprocess.run(cmd, capture_output=True, text=True), out


def test_split_images_same_names_do_not_collide(tmp_path):
    """a/x.jpg and b/x.jpg, y.jpg and y.png: every patch file holds its own image's pixels."""
    files = {name: np.full((60, 80, 3), 40 * (k + 1), np.uint8)
             for k, name in enumerate(["a/x.jpg", "b/x.jpg", "c/y.jpg", "c/y.png"])}
    proc, out = _split_cli(tmp_path, files, "--patch-size", "50", "--stride", "40", "--ext", ".png")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "val.json").read_text())
    names = [im["file_name"] for im in data["images"]]
    assert len(names) == len(set(names)) == 4 * 4  # 80x60 -> origins x 0, 30; y 0, 10
    assert "a/x.jpg_0.png" in names and "c/y.png_3.png" in names
    assert len(list(p for p in out.rglob("*.png"))) == 16
    for im in data["images"]:
        source = Path(im["patch"]["file_name"]).relative_to(tmp_path / "img").as_posix()
        patch = cv2.imread(str(out / "val" / im["file_name"]))
        # the jpg encoder keeps a flat image flat: within a few grey levels of the source
        assert abs(int(patch.mean()) - int(files[source].mean())) <= 2, (im["file_name"], source)
        assert im["file_name"].startswith(source + "_")


def test_split_images_refuses_gaps_between_patches(tmp_path):
    files = {"x.png": np.zeros((300, 300, 3), np.uint8)}
    proc, out = _split_cli(tmp_path, files, "--patch-size", "100", "--stride", "200")
    assert proc.returncode != 0
    assert "--stride 200 is larger than --patch-size 100" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not out.exists()
    proc, out = _split_cli(tmp_path, files, "--patch-size", "100", "--stride", "100")
    assert proc.returncode == 0, proc.stderr


def test_split_images_clean_errors_and_stale_temporaries(tmp_path):
    from sod2.data import io as sod2_io

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "patches"
    stale = out / f".val.tmp-{sod2_io._HOST}-{dead.pid}-k2j3"  # a killed run's patch folder
    stale.mkdir(parents=True)
    (stale / "x.png_0.png").write_bytes(b"x" * 5000)
    proc, out = _split_cli(tmp_path, {"x.png": np.zeros((50, 50, 3), np.uint8)}, "--patch-size", "50",
                           "--stride", "50")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["val", "val.json"]
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "split_images.py"), "--dataset",
                           "sodad_tran", "--output", str(out), "--split-name", "v"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "'sodad_tran' is not registered (did you mean 'sodad_train'" in proc.stderr
