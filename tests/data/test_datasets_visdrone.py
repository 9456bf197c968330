"""VisDrone2019-DET txt loader and its registrations."""
import logging
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.common import IGNORE_REGION
from sod2.data.datasets.visdrone import VISDRONE_CLASSES
from sod2.data.io import DataFormatError, read_image

A_LINES = """\
10,10,20,20,1,1,0,0
5,5,10,10,0,4,1,2

0,0,30,30,0,0,-1,-1
1,1,5,5,0,11,0,0
50,50,10,10,1,10,0,0,
90,70,20,20,1,9,0,0
200,200,5,5,1,4
3,3,0,5,1,1,0,0
3,3,-2,5,1,1,0,0
"""


def make_split(root, write_image, split="val", files=None):
    base = root / "VisDrone" / f"VisDrone2019-DET-{split}"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    (base / "images").mkdir(parents=True, exist_ok=True)
    files = files if files is not None else {
        "0000002_00001_d_0000001": ("jpg", "color", 100, 80, A_LINES),
        "0000001_00002_d_0000002": ("png", "gray16", 60, 50, "1,2,3,4,1,2,0,0\n"),
        "0000003_00001_d_0000003": ("jpg", "gray", 40, 30, ""),
    }
    for stem, (ext, kind, w, h, text) in files.items():
        write_image(base / "images" / f"{stem}.{ext}", w, h, kind)
        (base / "annotations" / f"{stem}.txt").write_text(text)
    return base


def test_boxes_classes_ignores_and_regions(sod2_root, write_image, caplog):
    base = make_split(sod2_root, write_image)
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get("visdrone2019_val")
    # ids follow the sorted stems; sizes come from the image headers
    assert [d["image_id"] for d in dicts] == [1, 2, 3]
    assert [os.path.basename(d["file_name"]) for d in dicts] == [
        "0000001_00002_d_0000002.png", "0000002_00001_d_0000001.jpg", "0000003_00001_d_0000003.jpg"]
    assert all(os.path.isabs(d["file_name"]) for d in dicts)
    assert [(d["width"], d["height"]) for d in dicts] == [(60, 50), (100, 80), (40, 30)]

    anns = dicts[1]["annotations"]
    got = [(a["category_id"], a["bbox"], a["ignore"], a["iscrowd"]) for a in anns]
    assert got == [
        (IGNORE_REGION, [0.0, 0.0, 30.0, 30.0], 1, 1),  # category 0: region, listed first
        (0, [10.0, 10.0, 20.0, 20.0], 0, 0),             # pedestrian
        (3, [5.0, 5.0, 10.0, 10.0], 1, 1),               # score 0: ignored car
        (9, [50.0, 50.0, 10.0, 10.0], 0, 0),             # trailing comma; motor
        (8, [90.0, 70.0, 10.0, 10.0], 0, 0),             # bus clipped to the image
    ]
    assert anns[1]["area"] == 400.0
    assert dicts[0]["annotations"][0]["category_id"] == 1  # people
    assert dicts[2]["annotations"] == []  # image without objects kept

    text = caplog.text
    assert "1 box(es) clipped" in text
    assert "2 box(es) dropped: non-positive size" in text
    assert "1 box(es) dropped: outside the image" in text
    assert "1 box(es) dropped: category 11 'others'" in text
    assert str(base / "annotations" / "0000002_00001_d_0000001.txt") in text


def test_metadata_and_names():
    for name in ("visdrone2019_train", "visdrone2019_val", "visdrone2019_test_dev"):
        assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get("visdrone2019_val")
    assert tuple(meta.thing_classes) == VISDRONE_CLASSES
    assert meta.evaluator_type == "sod2" and meta.eval_protocol == "aitod"
    assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(10)}
    assert "VisDrone2019-DET-val" in meta.dataset_root_hint


def test_grayscale_and_16bit_images_load_as_3_channels(sod2_root, write_image):
    make_split(sod2_root, write_image)
    for d in DatasetCatalog.get("visdrone2019_val"):
        img = read_image(d["file_name"])
        assert img.shape == (d["height"], d["width"], 3) and img.dtype == np.uint8


@pytest.mark.parametrize("line, message", [
    ("1,2,3,4,1", "expected at least 6"),
    ("1,2,x,4,1,1,0,0", "box fields must be numbers"),
    ("1,2,3,4,1,1.5,0,0", "category must be an integer"),
    ("1,2,3,4,1,12,0,0", "unknown category id 12"),
])
def test_bad_line_names_file_and_line(sod2_root, write_image, line, message):
    base = make_split(sod2_root, write_image, files={
        "img": ("jpg", "color", 50, 40, f"1,1,5,5,1,1,0,0\n\n{line}\n")})
    with pytest.raises(DataFormatError, match=message) as e:
        DatasetCatalog.get("visdrone2019_val")
    assert str(base / "annotations" / "img.txt") in str(e.value)
    assert "line 3" in str(e.value)


def test_missing_image_is_an_error_naming_it(sod2_root, write_image):
    base = make_split(sod2_root, write_image)
    os.remove(base / "images" / "0000002_00001_d_0000001.jpg")
    with pytest.raises(DataFormatError, match="image file not found") as e:
        DatasetCatalog.get("visdrone2019_val")
    assert str(base / "images" / "0000002_00001_d_0000001.jpg") in str(e.value)


def test_undecodable_image_header_is_an_error(sod2_root, write_image):
    base = make_split(sod2_root, write_image)
    (base / "images" / "0000003_00001_d_0000003.jpg").write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match="0000003_00001_d_0000003.jpg: cannot read image"):
        DatasetCatalog.get("visdrone2019_val")


def test_missing_annotation_folder_points_to_readme(sod2_root):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("visdrone2019_train")
    assert str(sod2_root / "VisDrone" / "VisDrone2019-DET-train" / "annotations") in str(e.value)


def test_round_trip(sod2_root, write_image, round_trip):
    base = make_split(sod2_root, write_image)
    round_trip(DatasetCatalog.get("visdrone2019_val"), VISDRONE_CLASSES, base / "images")
