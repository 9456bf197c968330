"""AI-TOD v1 json loader and its registrations (PNG images, also grayscale and 16-bit)."""
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.aitod import AITOD_CLASSES
from sod2.data.io import DataFormatError, read_image

CATEGORIES = [{"id": i + 1, "name": n, "supercategory": "none"} for i, n in enumerate(AITOD_CLASSES)]


def make_split(root, write_image, write_json, split="trainval", annotations=None):
    base = root / "AI-TOD"
    write_image(base / "images" / split / "P0000__800__0___0.png", 80, 80, kind="gray16")
    write_image(base / "images" / split / "0001.png", 80, 80, kind="gray")
    write_image(base / "images" / split / "0002.png", 80, 80, kind="color")
    images = [{"id": i, "file_name": f, "width": 80, "height": 80}
              for i, f in enumerate(["P0000__800__0___0.png", "0001.png", "0002.png"])]
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 0, "category_id": 8, "bbox": [1.5, 2.5, 6.0, 7.0], "area": 42, "iscrowd": 0},
            {"id": 2, "image_id": 0, "category_id": 6, "bbox": [10, 10, 3, 2], "area": 6, "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [-4, 70, 10, 20], "area": 200, "iscrowd": 0},
        ]
    write_json(base / "annotations" / f"aitod_{split}_v1.json",
               {"images": images, "annotations": annotations, "categories": CATEGORIES})
    return base


def test_boxes_classes_and_images(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json)
    dicts = DatasetCatalog.get("aitod_trainval")
    assert [d["image_id"] for d in dicts] == [0, 1, 2]
    got = [[(a["category_id"], a["bbox"], a["ignore"]) for a in d["annotations"]] for d in dicts]
    assert got == [[(7, [1.5, 2.5, 6.0, 7.0], 0), (5, [10.0, 10.0, 3.0, 2.0], 1)],
                   [(0, [0.0, 70.0, 6.0, 10.0], 0)],  # clipped at both edges
                   []]
    for d in dicts:  # 16-bit, grayscale and colour PNGs all load as H x W x 3 uint8
        img = read_image(d["file_name"])
        assert img.shape == (80, 80, 3) and img.dtype == np.uint8


def test_unknown_category_id(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, split="test", annotations=[
        {"id": 5, "image_id": 0, "category_id": 9, "bbox": [1, 1, 2, 2], "iscrowd": 0}])
    with pytest.raises(DataFormatError, match=r"aitod_test_v1\.json: annotation #0 \(id 5\): unknown category id 9"):
        DatasetCatalog.get("aitod_test")


def test_missing_files(sod2_root, write_image, write_json):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("aitod_val")
    assert str(sod2_root / "AI-TOD" / "annotations" / "aitod_val_v1.json") in str(e.value)
    base = make_split(sod2_root, write_image, write_json, split="train")
    (base / "images" / "train").rename(base / "images" / "elsewhere")
    with pytest.raises(DataFormatError, match="folder not found") as e:
        DatasetCatalog.get("aitod_train")
    assert str(base / "images" / "train") in str(e.value)


def test_missing_image_is_an_error_naming_it(sod2_root, write_image, write_json):
    base = make_split(sod2_root, write_image, write_json, split="test")
    (base / "images" / "test" / "0001.png").unlink()
    with pytest.raises(DataFormatError, match=r"0001\.png: image file not found \(listed in .*aitod_test_v1\.json; 1 of 3"):
        DatasetCatalog.get("aitod_test")


def test_metadata():
    for split in ("train", "val", "trainval", "test"):
        meta = MetadataCatalog.get(f"aitod_{split}")
        assert tuple(meta.thing_classes) == AITOD_CLASSES and meta.eval_protocol == "aitod"
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(8)}


def test_round_trip(sod2_root, write_image, write_json, round_trip):
    base = make_split(sod2_root, write_image, write_json)
    round_trip(DatasetCatalog.get("aitod_trainval"), AITOD_CLASSES, base / "images" / "trainval")
