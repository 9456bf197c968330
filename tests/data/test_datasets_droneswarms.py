"""DroneSwarms (SR-TOD layout) json loader and its registrations."""
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.droneswarms import DRONESWARMS_CLASSES
from sod2.data.io import DataFormatError


def make_split(root, write_image, write_json, split="train", categories=None):
    base = root / "DroneSwarms" / split
    write_image(base / "JPEGImages" / "f1.jpg", 96, 54)
    write_image(base / "JPEGImages" / "f2.jpg", 96, 54)
    write_json(base / f"{split}.json", {
        "images": [{"id": 1, "file_name": "f1.jpg", "width": 96, "height": 54},
                   {"id": 2, "file_name": "f2.jpg", "width": 96, "height": 54}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [40, 20, 7, 8], "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [90, 50, 9, 9], "iscrowd": 0}],
        "categories": categories or [{"id": 1, "name": "drone"}]})
    return base


def test_boxes(sod2_root, write_image, write_json, caplog):
    make_split(sod2_root, write_image, write_json)
    dicts = DatasetCatalog.get("droneswarms_train")
    assert [[(a["category_id"], a["bbox"]) for a in d["annotations"]] for d in dicts] == [
        [(0, [40.0, 20.0, 7.0, 8.0]), (0, [90.0, 50.0, 6.0, 4.0])], []]
    assert "1 box(es) clipped" in caplog.text


def test_category_must_be_named_drone(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, split="test", categories=[{"id": 1, "name": "uav"}])
    with pytest.raises(DataFormatError, match=r"test\.json: category 'drone' not in the file's categories"):
        DatasetCatalog.get("droneswarms_test")


def test_missing_files(sod2_root):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("droneswarms_test")
    assert str(sod2_root / "DroneSwarms" / "test" / "test.json") in str(e.value)


def test_metadata():
    meta = MetadataCatalog.get("droneswarms_train")
    assert tuple(meta.thing_classes) == DRONESWARMS_CLASSES == ("drone",)
    assert meta.eval_protocol == "aitod" and meta.evaluator_type == "sod2"


def test_round_trip(sod2_root, write_image, write_json, round_trip):
    base = make_split(sod2_root, write_image, write_json)
    round_trip(DatasetCatalog.get("droneswarms_train"), DRONESWARMS_CLASSES, base / "JPEGImages")
