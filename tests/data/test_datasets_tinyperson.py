"""TinyPerson json loader (merged person class, ignore/uncertain, dense images)."""
import logging

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.tinyperson import TINYPERSON_CLASSES, load_tinyperson_split
from sod2.data.io import DataFormatError

CATEGORIES = [{"id": 1, "name": "sea_person", "supercategory": "person"},
              {"id": 2, "name": "earth_person", "supercategory": "person"}]


def ann(i, image_id, bbox, cat=1, **flags):
    a = {"id": i, "image_id": image_id, "bbox": bbox, "category_id": cat, "iscrowd": 0,
         "area": bbox[2] * bbox[3], "ignore": False, "uncertain": False, "logo": False,
         "in_dense_image": False}
    a.update(flags)
    return a


def make_split(root, write_image, write_json, split="train", annotations=None, images=None,
               categories=CATEGORIES):
    tiny = root / "TinyPerson" / "tiny_set"
    images = images if images is not None else [
        {"id": 0, "file_name": "labeled_images/a.jpg", "width": 80, "height": 60},
        {"id": 1, "file_name": "pure_bg_images/b.jpg", "width": 80, "height": 60},
        {"id": 2, "file_name": "labeled_dense_images/c.jpg", "width": 80, "height": 60},
        {"id": 3, "file_name": "labeled_dense_images/d.jpg", "width": 80, "height": 60},
    ]
    if annotations is None:
        annotations = [
            ann(0, 0, [10.5, 10.25, 4.0, 6.0], cat=1),
            ann(1, 0, [20, 20, 5, 5], cat=2),
            ann(2, 0, [30, 30, 8, 8], cat=2, ignore=True, logo=True),
            ann(3, 0, [40, 40, 3, 3], cat=1, uncertain=True),
            ann(4, 0, [75, 55, 10, 10], cat=2),
            ann(5, 2, [1, 1, 2, 2], cat=1, in_dense_image=True),
        ] + [ann(100 + k, 3, [k % 70, 1, 2, 2], cat=2) for k in range(221)]
    for im in images:
        write_image(tiny / split / im["file_name"], im["width"], im["height"])
    write_json(tiny / "annotations" / f"tiny_set_{split}.json",
               {"type": "instance", "images": images, "annotations": annotations,
                "categories": categories})
    return tiny


def test_merged_class_ignore_flags_and_dense_skip(sod2_root, write_image, write_json, caplog):
    make_split(sod2_root, write_image, write_json)
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get("tinyperson_train")
    # both dense images (flagged, and > 220 boxes) are skipped for training
    assert [d["image_id"] for d in dicts] == [0, 1]
    assert "2 dense image(s) skipped" in caplog.text
    got = [(a["category_id"], a["bbox"], a["ignore"], a["iscrowd"]) for a in dicts[0]["annotations"]]
    assert got == [
        (0, [10.5, 10.25, 4.0, 6.0], 0, 0),
        (0, [20.0, 20.0, 5.0, 5.0], 0, 0),
        (0, [30.0, 30.0, 8.0, 8.0], 1, 1),  # ignore
        (0, [40.0, 40.0, 3.0, 3.0], 1, 1),  # uncertain
        (0, [75.0, 55.0, 5.0, 5.0], 0, 0),  # clipped
    ]
    assert "1 box(es) clipped" in caplog.text
    assert dicts[1]["annotations"] == []  # pure background image kept
    assert dicts[0]["file_name"].endswith("tiny_set/train/labeled_images/a.jpg")


def test_dense_images_kept_on_request_and_skipped_for_test(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json)
    assert len(load_tinyperson_split("train", skip_dense=False)) == 4
    # TinyBenchmark does not use dense images in evaluation either
    make_split(sod2_root, write_image, write_json, split="test")
    assert [d["image_id"] for d in DatasetCatalog.get("tinyperson_test")] == [0, 1]
    dicts = load_tinyperson_split("test", skip_dense=False)
    assert len(dicts) == 4 and len(dicts[3]["annotations"]) == 221


def test_dense_threshold_is_220_and_configurable(sod2_root, write_image, write_json):
    images = [{"id": 0, "file_name": "a.jpg", "width": 80, "height": 60},
              {"id": 1, "file_name": "b.jpg", "width": 80, "height": 60}]
    annotations = [ann(k, 0, [k % 70, 1, 2, 2]) for k in range(220)] + \
        [ann(1000 + k, 1, [k % 70, 1, 2, 2]) for k in range(221)]
    make_split(sod2_root, write_image, write_json, images=images, annotations=annotations)
    assert [d["image_id"] for d in load_tinyperson_split("train")] == [0]  # 220 boxes: not dense
    assert load_tinyperson_split("train", dense_threshold=219) == []
    assert len(load_tinyperson_split("train", dense_threshold=221)) == 2
    with pytest.raises(ValueError, match="dense_threshold"):
        load_tinyperson_split("train", dense_threshold=-1)


def test_logo_boxes_are_ignored_unless_asked(sod2_root, write_image, write_json, caplog):
    annotations = [ann(0, 0, [1, 1, 4, 4]), ann(1, 0, [10, 10, 4, 4], logo=True),
                   ann(2, 0, [20, 20, 4, 4], logo=True, ignore=True)]
    make_split(sod2_root, write_image, write_json, annotations=annotations)
    with caplog.at_level(logging.WARNING):
        dicts = load_tinyperson_split("train")
    assert [a["ignore"] for a in dicts[0]["annotations"]] == [0, 1, 1]
    assert "1 box(es) flagged only 'logo' ignored" in caplog.text
    kept = load_tinyperson_split("train", logo_as_ignore=False)
    assert [a["ignore"] for a in kept[0]["annotations"]] == [0, 0, 1]


def test_all_task_file_with_person_category(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, annotations=[ann(0, 0, [1, 1, 3, 3])],
               categories=[{"id": 1, "name": "person", "supercategory": "none"}])
    assert DatasetCatalog.get("tinyperson_train")[0]["annotations"][0]["category_id"] == 0


def test_unknown_category_id_names_the_annotation(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, annotations=[ann(0, 0, [1, 1, 3, 3]),
                                                                ann(77, 0, [1, 1, 3, 3], cat=3)])
    with pytest.raises(DataFormatError, match=r"tiny_set_train\.json: annotation #1 \(id 77\): "
                                              r"unknown category id 3"):
        DatasetCatalog.get("tinyperson_train")


def test_unknown_category_name_and_corner_files_are_errors(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, annotations=[],
               categories=[{"id": 1, "name": "dog"}])
    with pytest.raises(DataFormatError, match="'dog' is not a TinyPerson category"):
        DatasetCatalog.get("tinyperson_train")
    img = {"id": 0, "file_name": "a.jpg", "width": 64, "height": 48, "corner": [0, 0, 32, 24]}
    make_split(sod2_root, write_image, write_json, annotations=[], images=[img])
    with pytest.raises(DataFormatError, match="'corner'"):
        DatasetCatalog.get("tinyperson_train")


def test_missing_annotation_file(sod2_root):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("tinyperson_test")
    assert str(sod2_root / "TinyPerson" / "tiny_set" / "annotations" / "tiny_set_test.json") in str(e.value)


def test_metadata():
    meta = MetadataCatalog.get("tinyperson_train")
    assert tuple(meta.thing_classes) == TINYPERSON_CLASSES == ("person",)
    assert meta.eval_protocol == "tinyperson"


def test_round_trip(sod2_root, write_image, write_json, round_trip):
    tiny = make_split(sod2_root, write_image, write_json)
    round_trip(DatasetCatalog.get("tinyperson_train"), TINYPERSON_CLASSES, tiny / "train")
