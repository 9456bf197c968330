"""EXIF orientation and non-finite pixels in sod2.data.io, through the paths users take:
read_image / verify_image / image_size, a dataset loader's size check, a converter, the
config's test mapper, tools/split_images.py; and float images with NaN / inf pixels."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.data.detection_utils import read_image as d2_read_image
from PIL import Image

from sod2.data.io import DataFormatError, image_size, read_image, to_uint8_rgb, verify_image
from tests.inference.test_demo_slicing import CONFIG, weights  # noqa: F401 (a fixture)
from tests.modules import tool_module

REPO = Path(__file__).resolve().parents[2]
ORIENTATION = 0x0112


def _upright(stored: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF standard's meaning of each orientation, with numpy's rot90 / flips /
    transpose (rot90 k=1 turns counter-clockwise): how the stored pixels are displayed."""
    t = np.swapaxes(stored, 0, 1)
    return {1: stored, 2: np.fliplr(stored), 3: np.rot90(stored, 2), 4: np.flipud(stored),
            5: t, 6: np.rot90(stored, -1), 7: np.rot90(t, 2), 8: np.rot90(stored, 1)}[orientation]


def _stored(h=30, w=40, seed=0) -> np.ndarray:
    """A smooth, asymmetric RGB image (smooth so that JPEG keeps it close)."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 0)


def _save(path: Path, rgb: np.ndarray, orientation: int, **kw) -> Path:
    """Write ``rgb`` (or a 2-D array) with Pillow, with an EXIF orientation tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        Image.fromarray(rgb).save(path, tiffinfo={ORIENTATION: orientation})
    else:
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        Image.fromarray(rgb).save(path, exif=exif, **kw)
    return path


def test_orientation_hand_value(tmp_path):
    """Orientation 6 ("rotate 90 degrees clockwise to display"): the stored top-left
    pixel is shown top-right, and a 400 x 300 (W x H) file is read as 300 wide, 400 high
    (Detectron2's read_image: (400, 300, 3))."""
    img = np.zeros((300, 400, 3), np.uint8)
    img[:8, :8] = (255, 0, 0)  # red stored top-left corner
    path = _save(tmp_path / "o6.png", img, 6)
    rgb = read_image(str(path), format="RGB")
    assert rgb.shape == d2_read_image(str(path), format="RGB").shape == (400, 300, 3)
    assert (rgb[:8, -8:] == (255, 0, 0)).all() and rgb[:, :-8].max() == 0
    assert image_size(str(path)) == verify_image(str(path)) == verify_image(str(path), "full") == (300, 400)


@pytest.mark.parametrize("suffix,kw", [(".jpg", {"quality": 95}), (".png", {}), (".webp", {"lossless": True})])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientations_match_detectron2_and_numpy(tmp_path, suffix, kw, orientation):
    stored = _stored()
    path = str(_save(tmp_path / f"o{orientation}{suffix}", stored, orientation, **kw))
    # the pixels as stored, by a decoder that ignores the orientation tag
    raw = cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)[:, :, ::-1]
    assert raw.shape == (30, 40, 3)
    rgb = read_image(path, format="RGB")
    np.testing.assert_array_equal(rgb, _upright(raw, orientation))
    np.testing.assert_array_equal(rgb, d2_read_image(path, format="RGB"))
    np.testing.assert_array_equal(read_image(path, format="BGR"), d2_read_image(path, format="BGR"))
    size = (rgb.shape[1], rgb.shape[0])
    assert image_size(path) == verify_image(path) == verify_image(path, "full") == size


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_and_16_bit(tmp_path, orientation):
    """TIFF: OpenCV's and Pillow's readers turn the pixels themselves (Detectron2's
    read_image then turns them a second time with Pillow >= 11, so it is not the reference
    here): upright once, 8-bit colour and 16-bit grayscale (stretched min..max)."""
    stored = _stored(seed=orientation)
    path = str(_save(tmp_path / "c.tif", stored, orientation))
    np.testing.assert_array_equal(read_image(path, format="RGB"), _upright(stored, orientation))
    assert image_size(path) == verify_image(path, "full") == (_upright(stored, orientation).shape[1::-1])

    gray16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 37 + 1000).astype(np.uint16)
    path16 = str(_save(tmp_path / "g.tif", gray16, orientation))
    up = _upright(gray16, orientation).astype(np.float64)
    want = np.rint((up - up.min()) * 255.0 / (up.max() - up.min())).astype(np.uint8)
    np.testing.assert_array_equal(read_image(path16, format="RGB"), np.repeat(want[:, :, None], 3, axis=2))


def test_16_bit_png_with_orientation(tmp_path):
    gray16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50).astype(np.uint16)
    path = str(_save(tmp_path / "g16.png", gray16, 8))
    up = _upright(gray16, 8).astype(np.float64)
    want = np.rint((up - up.min()) * 255.0 / (up.max() - up.min())).astype(np.uint8)
    out = read_image(path, format="BGR")
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], want)
    assert image_size(path) == (30, 40)


def _aitod_json(base, file_name, width, height, write_json):
    write_json(base / "annotations" / "aitod_val_v1.json", {
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 30, 6, 6], "area": 36}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(
            ["airplane", "bridge", "storage-tank", "ship", "swimming-pool", "vehicle", "person", "wind-mill"])]})


def test_loader_and_converter_check_the_upright_size(sod2_root, write_json, convert_tool, tmp_path, capsys):
    """A 40 x 30 (W x H) JPEG stored with orientation 6 is 30 x 40 upright: an annotation
    file that says 30 x 40 loads and converts, one that says the stored 40 x 30 is refused."""
    base = sod2_root / "AI-TOD"
    _save(base / "images" / "val" / "a.jpg", _stored(), 6, quality=95)
    _aitod_json(base, "a.jpg", 30, 40, write_json)
    (rec,) = DatasetCatalog.get("aitod_val")
    assert (rec["width"], rec["height"]) == (30, 40)
    out = tmp_path / "o.json"
    assert convert_tool.main(["aitod", "--split", "val", "--output", str(out), "--verify-images", "full"]) == 0
    _aitod_json(base, "a.jpg", 40, 30, write_json)
    with pytest.raises(DataFormatError, match=r"a\.jpg: image is 30x40 but the annotation says 40x30"):
        DatasetCatalog.get("aitod_val")


def test_visdrone_sizes_are_upright(sod2_root):
    base = sod2_root / "VisDrone" / "VisDrone2019-DET-val"
    _save(base / "images" / "a.jpg", _stored(), 8, quality=95)
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "a.txt").write_text("2,30,6,6,1,1,0,0\n")  # inside 30 x 40 only
    (rec,) = DatasetCatalog.get("visdrone2019_val")
    assert (rec["width"], rec["height"]) == (30, 40)
    assert [a["bbox"] for a in rec["annotations"]] == [[2.0, 30.0, 6.0, 6.0]]  # not clipped


def test_test_mapper_gives_the_model_upright_pixels(tmp_path):
    """The config's test mapper (SODDatasetMapper) on an orientation-6 JPEG: the model
    input is Detectron2's upright BGR image, and the mapper's size check passes."""
    from detectron2.config import instantiate

    from sod2.config import get_config

    path = str(_save(tmp_path / "o6.jpg", _stored(), 6, quality=95))
    mapper = instantiate(get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py").dataloader.test.mapper)
    out = mapper({"file_name": path, "image_id": 1, "height": 40, "width": 30, "annotations": []})
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), d2_read_image(path, format="BGR"))


def test_split_images_cuts_the_upright_image(tmp_path, write_json):
    stored = _stored(h=60, w=80)
    img_dir = tmp_path / "imgs"
    path = _save(img_dir / "a.png", stored, 6)
    ann = write_json(tmp_path / "a.json", {
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 80}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 60, 6, 6], "area": 36}],
        "categories": [{"id": 1, "name": "car"}]})
    tool_module("split_images").main(["--json", str(ann), "--image-root", str(img_dir), "--output",
                                      str(tmp_path / "out"), "--split-name", "s", "--patch-size", "40",
                                      "--stride", "40", "--fill-ignore"])
    upright = _upright(stored, 6)
    assert upright.shape == (80, 60, 3)
    images = json.loads((tmp_path / "out" / "s.json").read_text())["images"]
    assert sorted(tuple(im["patch"]["origin"]) for im in images) == [(0, 0), (0, 40), (20, 0), (20, 40)]
    for im in images:
        x, y = im["patch"]["origin"]
        patch = cv2.imread(str(tmp_path / "out" / "s" / Path(im["file_name"]).name))[:, :, ::-1]
        np.testing.assert_array_equal(patch, upright[y:y + 40, x:x + 40])
    assert path.exists()


@pytest.mark.parametrize("bad,what", [(np.nan, "1 NaN"), (np.inf, "1 infinite"), (-np.inf, "1 infinite")])
def test_non_finite_float_images_are_refused(tmp_path, bad, what):
    img = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    img[3, 5] = bad
    path = tmp_path / "f.tif"
    assert cv2.imwrite(str(path), img)
    with pytest.raises(DataFormatError, match=rf"f\.tif: image has {what} value\(s\) \(first at row 3, column 5\)"):
        read_image(str(path))
    with pytest.raises(DataFormatError, match=r"f\.tif: image has"):
        verify_image(str(path), "full")
    both = img.copy()
    both[3, 5], both[0, 0], both[7, 7], both[8, 8] = 0.5, np.nan, np.inf, -np.inf
    with pytest.raises(DataFormatError, match=r"frame: image has 1 NaN and 2 infinite value\(s\) \(first at row 0"):
        to_uint8_rgb(both, source="frame")
    img[3, 5] = 0.5  # finite again: stretched min..max
    out = to_uint8_rgb(img)
    want = np.rint((img - img.min()) * 255.0 / (img.max() - img.min()))
    np.testing.assert_allclose(out[:, :, 0], want, atol=1)  # float32 file vs float64 by hand


def test_demo_skips_a_nan_image_naming_it(tmp_path, weights):  # noqa: F811
    """The demo draws the good image and names the NaN one, exit status 1."""
    good = tmp_path / "in" / "good.png"
    good.parent.mkdir()
    cv2.imwrite(str(good), _stored())
    img = np.random.default_rng(0).random((30, 40)).astype(np.float32)
    img[1, 2] = np.nan
    cv2.imwrite(str(tmp_path / "in" / "nan.tif"), img)
    with pytest.raises(SystemExit) as e:
        tool_module("demo").main(["--config-file", CONFIG, "--input", str(tmp_path / "in"),
                                  "--output", str(tmp_path / "o"),
                                  "--opts", f"train.init_checkpoint={weights}", "train.device=cpu"])
    assert "nan.tif: image has 1 NaN value(s)" in str(e.value.code)
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["good.png.png"]
