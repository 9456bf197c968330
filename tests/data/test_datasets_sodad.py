"""SODA-D whole-image and patch registrations."""
import logging

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.common import IGNORE_REGION
from sod2.data.datasets.export import to_sod2_json
from sod2.data.datasets.sodad import SODAD_CLASSES
from sod2.data.io import DataFormatError

CATEGORIES = [{"id": i + 1, "name": n} for i, n in enumerate(SODAD_CLASSES)] + [
    {"id": 10, "name": "ignore"}]


def make_raw(root, write_image, write_json, split="train", annotations=None):
    raw = root / "SODA-D" / "rawData"
    write_image(raw / "Images" / "00001.jpg", 120, 90)
    write_image(raw / "Images" / "00002.jpg", 50, 40)
    images = [{"id": 1, "file_name": "00001.jpg", "width": 120, "height": 90},
              {"id": 2, "file_name": "00002.jpg", "width": 50, "height": 40}]
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 6, 12], "area": 72, "ignore": False},
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [30, 30, 4, 4], "area": 16, "ignore": True},
            {"id": 3, "image_id": 1, "category_id": 10, "bbox": [60, 0, 40, 20], "area": 800, "ignore": False},
            {"id": 4, "image_id": 1, "category_id": 5, "bbox": [130, 10, 5, 5], "area": 25, "ignore": False},
            {"id": 5, "image_id": 1, "category_id": 6, "bbox": [0, 0, 5, 0], "area": 0, "ignore": False},
        ]
    write_json(raw / "Annotations" / f"{split}.json",
               {"images": images, "annotations": annotations, "categories": CATEGORIES})
    return raw


def test_raw_classes_ignore_boxes_and_regions(sod2_root, write_image, write_json, caplog):
    make_raw(sod2_root, write_image, write_json)
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get("sodad_train")
    got = [(a["category_id"], a["bbox"], a["ignore"]) for a in dicts[0]["annotations"]]
    assert got == [(IGNORE_REGION, [60.0, 0.0, 40.0, 20.0], 1),  # category 10, listed first
                   (0, [10.0, 10.0, 6.0, 12.0], 0),
                   (8, [30.0, 30.0, 4.0, 4.0], 1)]               # ignore-flagged warning-cone
    assert dicts[1]["annotations"] == []
    assert "1 box(es) dropped: outside the image" in caplog.text
    assert "1 box(es) dropped: non-positive size" in caplog.text


def test_unknown_category_and_image_ids(sod2_root, write_image, write_json):
    make_raw(sod2_root, write_image, write_json, split="val", annotations=[
        {"id": 41, "image_id": 1, "category_id": 11, "bbox": [1, 1, 2, 2], "ignore": False}])
    with pytest.raises(DataFormatError, match=r"val\.json: annotation #0 \(id 41\): unknown category id 11"):
        DatasetCatalog.get("sodad_val")
    make_raw(sod2_root, write_image, write_json, split="val", annotations=[
        {"id": 42, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2], "ignore": False}])
    with pytest.raises(DataFormatError, match=r"\(id 42\): unknown image id 9"):
        DatasetCatalog.get("sodad_val")


def test_patches_carry_origin_and_name_the_whole_image_dataset(sod2_root, write_image, write_json):
    patches = sod2_root / "SODA-D" / "patches"
    whole = {"image_id": 1, "file_name": "00001.jpg", "width": 120, "height": 90}
    dicts = []
    for k, origin in enumerate(([0, 0], [60, 0])):
        write_image(patches / "test" / f"00001_{k}.jpg", 64, 64)
        dicts.append({"file_name": str(patches / "test" / f"00001_{k}.jpg"), "image_id": k + 1,
                      "width": 64, "height": 64, "annotations": [],
                      "patch": dict(whole, origin=origin)})
    dicts[0]["annotations"].append({"bbox": [5, 5, 3, 3], "category_id": 2, "iscrowd": 0, "ignore": 0})
    write_json(patches / "test.json", to_sod2_json(dicts, SODAD_CLASSES, patches / "test"))

    loaded = DatasetCatalog.get("sodad_test_patches")
    assert [d["patch"]["origin"] for d in loaded] == [[0, 0], [60, 0]]
    assert loaded[0]["patch"]["file_name"] == "00001.jpg"
    assert loaded[0]["annotations"][0]["category_id"] == 2
    assert MetadataCatalog.get("sodad_test_patches").whole_image_dataset == "sodad_test"


def test_missing_patch_file_points_to_the_splitter(sod2_root):
    with pytest.raises(DataFormatError, match="split_images.py") as e:
        DatasetCatalog.get("sodad_train_patches")
    assert str(sod2_root / "SODA-D" / "patches" / "train.json") in str(e.value)
    assert "datasets/README.md" in str(e.value)


def test_metadata():
    for split in ("train", "val", "test"):
        meta = MetadataCatalog.get(f"sodad_{split}")
        assert tuple(meta.thing_classes) == SODAD_CLASSES and meta.eval_protocol == "sodad"
        assert meta.thing_dataset_id_to_contiguous_id == {i + 1: i for i in range(9)}
        assert not hasattr(meta, "whole_image_dataset")


def test_round_trip(sod2_root, write_image, write_json, round_trip):
    raw = make_raw(sod2_root, write_image, write_json)
    round_trip(DatasetCatalog.get("sodad_train"), SODAD_CLASSES, raw / "Images")
