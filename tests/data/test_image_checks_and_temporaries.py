"""Image checks at load and conversion time (empty, truncated, undecodable, wrong size),
and the removal of temporaries that killed conversions, splits and generations left."""
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from sod2.data import io as sod2_io
from sod2.data.io import DataFormatError, atomic_write_json, remove_stale_temporaries, verify_image

REPO = Path(__file__).resolve().parents[2]


def _png(path, w=40, h=30, seed=0):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _corrupt_pixels(path):
    """Flip bytes inside the compressed pixel data; header and end marker stay intact."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    for k in range(start, start + 40):
        data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_verify_image_levels(tmp_path):
    good = _png(tmp_path / "good.png")
    assert verify_image(str(good)) == (40, 30)
    assert verify_image(str(good), "full") == (40, 30)

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"empty\.jpg: cannot read image: the file is empty"):
        verify_image(str(empty))

    foreign = tmp_path / "foreign.png"
    foreign.write_bytes(b"<html>not an image</html>")
    with pytest.raises(DataFormatError, match=r"foreign\.png: cannot read image header"):
        verify_image(str(foreign))

    # truncated files keep a readable header: the end marker gives them away
    jpg = tmp_path / "t.jpg"
    assert cv2.imwrite(str(jpg), np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = jpg.read_bytes()
    jpg.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"t\.jpg: cannot use image: truncated \(no JPEG"):
        verify_image(str(jpg))
    png = _png(tmp_path / "t.png")
    png.write_bytes(png.read_bytes()[:-30])
    with pytest.raises(DataFormatError, match=r"t\.png: cannot use image: truncated \(no PNG"):
        verify_image(str(png))

    # damaged pixel data: only a full decode finds it
    bad = _png(tmp_path / "bad.png")
    _corrupt_pixels(bad)
    assert verify_image(str(bad), "header") == (40, 30)
    with pytest.raises(DataFormatError, match=r"bad\.png: cannot decode"):
        verify_image(str(bad), "full")
    assert verify_image(str(empty), "none") is None


def _aitod(root, write_json):
    base = root / "AI-TOD"
    _png(base / "images" / "val" / "a.png", seed=1)
    _png(base / "images" / "val" / "b.png", seed=2)
    write_json(base / "annotations" / "aitod_val_v1.json", {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "b.png", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(
            ["airplane", "bridge", "storage-tank", "ship", "swimming-pool", "vehicle", "person",
             "wind-mill"])]})
    return base


def test_json_loader_checks_every_image(sod2_root, write_json):
    base = _aitod(sod2_root, write_json)
    assert len(DatasetCatalog.get("aitod_val")) == 2
    b = base / "images" / "val" / "b.png"
    b.write_bytes(b"")  # zero bytes
    with pytest.raises(DataFormatError, match=r"b\.png: cannot read image: the file is empty .*"
                                              r"aitod_val_v1\.json; 1 of 2 images unusable"):
        DatasetCatalog.get("aitod_val")
    _png(b)
    b.write_bytes(b.read_bytes()[:200])  # truncated
    with pytest.raises(DataFormatError, match=r"b\.png: cannot use image: truncated"):
        DatasetCatalog.get("aitod_val")
    _png(b, w=41)  # another size than listed
    with pytest.raises(DataFormatError, match=r"b\.png: image is 41x30 but the annotation says 40x30"):
        DatasetCatalog.get("aitod_val")


def test_json_loaders_take_the_verification_level_as_an_argument(sod2_root, write_json):
    """``verify`` is an explicit argument of the loaders (no module-level state): each call
    checks at its own level, and a load at "full" leaves the next default load at "header"."""
    from sod2.data.datasets import aitod, sodad
    from sod2.data.datasets.common import finish_records

    base = _aitod(sod2_root, write_json)
    _corrupt_pixels(base / "images" / "val" / "b.png")
    assert len(aitod.load_aitod_split("val")) == 2  # header and end marker are fine
    with pytest.raises(DataFormatError, match=r"b\.png: cannot decode image.*1 of 2 images unusable"):
        aitod.load_aitod_split("val", verify="full")
    assert len(aitod.load_aitod_split("val")) == 2  # the default is still "header"
    (base / "images" / "val" / "b.png").write_bytes(b"")
    assert len(aitod.load_aitod_split("val", verify="none")) == 2
    with pytest.raises(DataFormatError, match=r"b\.png: cannot read image: the file is empty"):
        aitod.load_aitod_split("val")
    with pytest.raises(ValueError, match=r"image verification must be one of \('none', 'header', 'full'\), "
                                         r"got 'fast'"):
        aitod.load_aitod_split("val", verify="fast")
    with pytest.raises(DataFormatError, match="image file not found"):  # "none" still needs the file
        finish_records([{"file_name": str(base / "gone.png"), "annotations": []}], "x.json", verify="none")
    assert "verify" in inspect.signature(sodad.load_sodad_patches_split).parameters


def test_convert_verify_images_levels(sod2_root, write_json, convert_tool, tmp_path, capsys):
    base = _aitod(sod2_root, write_json)
    _corrupt_pixels(base / "images" / "val" / "b.png")
    out = tmp_path / "o.json"
    args = ["aitod", "--split", "val", "--output", str(out)]
    assert convert_tool.main(args) == 0  # header and end marker are fine
    out.unlink()
    assert convert_tool.main(args + ["--verify-images", "full"]) == 1
    err = capsys.readouterr().err
    assert "b.png: cannot decode image" in err and "1 of 2 images unusable" in err
    assert not out.exists()
    (base / "images" / "val" / "b.png").write_bytes(b"")
    assert convert_tool.main(args) == 1
    assert "b.png: cannot read image: the file is empty" in capsys.readouterr().err
    assert convert_tool.main(args + ["--verify-images", "none"]) == 0


def test_convert_text_format_checks_images(sod2_root, write_image, convert_tool, tmp_path, capsys):
    base = sod2_root / "VisDrone" / "VisDrone2019-DET-val"
    write_image(base / "images" / "a.jpg", 40, 30)
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "a.txt").write_text("1,1,5,5,1,1,0,0\n")
    jpg = base / "images" / "a.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-200])
    assert convert_tool.main(["visdrone", "--split", "val", "--output", str(tmp_path / "v.json")]) == 1
    assert "a.jpg: cannot use image: truncated" in capsys.readouterr().err


def test_convert_output_folder_and_root_hint(sod2_root, convert_tool, tmp_path, capsys):
    with pytest.raises(SystemExit, match="is a folder"):
        convert_tool.main(["aitod", "--split", "val", "--output", str(tmp_path)])
    root = tmp_path / "my_aitod"
    assert convert_tool.main(["aitod", "--root", str(root), "--split", "val",
                              "--output", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert f"the given root {str(root)!r}" in err and "$SOD2_DATASETS" not in err


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_are_removed(tmp_path):
    dest = tmp_path / "out.json"
    host = sod2_io._HOST
    dead = tmp_path / f".out.json.tmp-{host}-{_dead_pid()}-abc123"
    dead.write_bytes(b"x" * 1000)
    dead_dir = tmp_path / f".out.json.old-{host}-{_dead_pid()}-k9"
    dead_dir.mkdir()
    (dead_dir / "f").write_text("x")
    alive = tmp_path / f".out.json.tmp-{host}-{os.getppid()}-zz"  # a running process
    alive.write_text("x")
    legacy_old = tmp_path / ".out.json.tmp-q1w2e3r4"  # no owner in the name
    legacy_old.write_text("x")
    old = time.time() - sod2_io.STALE_AGE_S - 60
    os.utime(legacy_old, (old, old))
    legacy_new = tmp_path / ".out.json.tmp-a1s2d3f4"
    legacy_new.write_text("x")
    other_file = tmp_path / ".out.json.tmp-notes.txt"  # not a temporary name
    other_file.write_text("x")
    atomic_write_json({"a": 1}, str(dest))
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([alive.name, legacy_new.name, other_file.name, "out.json"])
    assert remove_stale_temporaries(str(dest)) == []


def test_killed_conversion_leaves_nothing_behind(sod2_root, write_json, tmp_path):
    """A conversion killed while writing leaves its temporary; the next run removes it."""
    _aitod(sod2_root, write_json)
    out = tmp_path / "out" / "val.json"
    code = ("import os, signal, sod2.data.io as io\n"
            "def die(obj, f, **kw):\n"
            "    f.write('x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "io.json.dump = die\n"
            "import runpy, sys\n"
            f"sys.argv = ['convert_dataset.py', 'aitod', '--split', 'val', '--output', {str(out)!r}]\n"
            f"runpy.run_path({str(REPO / 'tools' / 'convert_dataset.py')!r}, run_name='__main__')\n")
    env = dict(os.environ, SOD2_DATASETS=str(sod2_root))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, timeout=300)
    assert r.returncode == -9
    left = list(out.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".val.json.tmp-")
    r = subprocess.run([sys.executable, str(REPO / "tools" / "convert_dataset.py"), "aitod", "--split",
                        "val", "--output", str(out)], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert [p.name for p in out.parent.iterdir()] == ["val.json"]
    assert "left behind by an interrupted run" in r.stderr


def test_damaged_synthetic_dataset_fails_at_load(sod2_root):
    from sod2.data import synthetic

    cfg = synthetic.SyntheticConfig(num_train=2, num_val=3, image_size=64)
    stale = sod2_root / f".sod2_synthetic.tmp-{sod2_io._HOST}-{_dead_pid()}-x1"
    stale.mkdir()
    (stale / "train").mkdir()
    assert len(synthetic.load_synthetic("val", cfg)) == 3
    assert not stale.exists()  # a killed generation's folder is removed
    img = sod2_root / "sod2_synthetic" / "val" / "00001.png"
    img.write_bytes(img.read_bytes()[:100])
    with pytest.raises(DataFormatError, match=r"val/00001\.png: cannot use image: truncated .*"
                                              r"delete .*sod2_synthetic and it is generated again"):
        synthetic.load_synthetic("val", cfg)
