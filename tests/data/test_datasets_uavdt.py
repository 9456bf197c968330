"""UAVDT (DET) sequence loader and its registrations."""
import logging
import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets import uavdt
from sod2.data.datasets.common import IGNORE_REGION
from sod2.data.io import DataFormatError

WHOLE = """\
1,1,10,10,20,10,1,1,1
1,2,30,5,8,6,1,2,2
2,1,12,10,20,10,1,1,1
2,3,60,40,10,10,2,1,3

2,4,5,5,0,4,1,1,1
"""
IGNORE = "1,9,0,30,15,10,1,-1,-1\n"


def make_sequence(root, write_image, seq="M0101", frames=(1, 2, 3), size=(64, 48),
                  whole=WHOLE, ignore=IGNORE, kind="color"):
    base = root / "UAVDT"
    for k in frames:
        write_image(base / "UAV-benchmark-M" / seq / f"img{k:06d}.jpg", *size, kind=kind)
    gt = base / "UAV-benchmark-MOTD_v1.0" / "GT"
    gt.mkdir(parents=True, exist_ok=True)
    if whole is not None:
        (gt / f"{seq}_gt_whole.txt").write_text(whole)
    if ignore is not None:
        (gt / f"{seq}_gt_ignore.txt").write_text(ignore)
    return base


@pytest.fixture
def one_train_sequence(monkeypatch):
    # the registered train split needs all 30 sequences; one is enough to test parsing
    monkeypatch.setitem(uavdt.UAVDT_SEQUENCES, "train", ["M0101"])


def test_split_is_30_train_20_test():
    train, test = uavdt.UAVDT_SEQUENCES["train"], uavdt.UAVDT_SEQUENCES["test"]
    assert len(train) == 30 and len(test) == 20 and not set(train) & set(test)
    assert "M0101" in train and "M1401" in test


def test_frames_boxes_regions(sod2_root, write_image, one_train_sequence, caplog):
    make_sequence(sod2_root, write_image)
    with caplog.at_level(logging.WARNING):
        dicts = DatasetCatalog.get("uavdt_train")
    assert [d["image_id"] for d in dicts] == [101_000_001, 101_000_002, 101_000_003]
    assert [os.path.basename(d["file_name"]) for d in dicts] == [
        "img000001.jpg", "img000002.jpg", "img000003.jpg"]
    assert all((d["width"], d["height"]) == (64, 48) for d in dicts)
    f1 = [(a["category_id"], a["bbox"], a["ignore"]) for a in dicts[0]["annotations"]]
    assert f1 == [(IGNORE_REGION, [0.0, 30.0, 15.0, 10.0], 1),
                  (0, [10.0, 10.0, 20.0, 10.0], 0),
                  (1, [30.0, 5.0, 8.0, 6.0], 0)]
    f2 = [(a["category_id"], a["bbox"]) for a in dicts[1]["annotations"]]
    # the bus sticks out of the 64x48 frame and is clipped; the zero-width box dropped
    assert f2 == [(0, [12.0, 10.0, 20.0, 10.0]), (2, [60.0, 40.0, 4.0, 8.0])]
    assert dicts[2]["annotations"] == []  # frame without boxes kept
    assert "1 box(es) clipped" in caplog.text and "1 box(es) dropped: non-positive size" in caplog.text
    assert "M0101_gt_whole.txt" in caplog.text


def test_size_read_per_sequence(sod2_root, write_image, monkeypatch):
    monkeypatch.setitem(uavdt.UAVDT_SEQUENCES, "test", ["M0203", "M0205"])
    make_sequence(sod2_root, write_image, "M0203", frames=(1,), size=(64, 48), whole="", ignore="")
    make_sequence(sod2_root, write_image, "M0205", frames=(1, 2), size=(60, 40), whole="", ignore="",
                  kind="gray")
    dicts = DatasetCatalog.get("uavdt_test")
    assert [(d["image_id"], d["width"], d["height"]) for d in dicts] == [
        (203_000_001, 64, 48), (205_000_001, 60, 40), (205_000_002, 60, 40)]


@pytest.mark.parametrize("whole, message", [
    ("1,1,10,10,20,10,1,1\n", "expected at least 9"),
    ("1,1,10,10,2x,10,1,1,1\n", "fields must be numbers"),
    ("1,1,10,10,20,10,1,1,4\n", "unknown category id '4'"),
])
def test_bad_line_names_file_and_line(sod2_root, write_image, one_train_sequence, whole, message):
    make_sequence(sod2_root, write_image, whole="2,1,1,1,5,5,1,1,1\n\n" + whole)
    with pytest.raises(DataFormatError, match=message) as e:
        DatasetCatalog.get("uavdt_train")
    assert "M0101_gt_whole.txt: line 3" in str(e.value)


def test_annotated_frame_without_image_is_an_error(sod2_root, write_image, one_train_sequence):
    make_sequence(sod2_root, write_image, frames=(1,), whole="1,1,1,1,5,5,1,1,1\n7,1,1,1,5,5,1,1,1\n")
    with pytest.raises(DataFormatError, match=r"img000007\.jpg: image file not found.*line 2"):
        DatasetCatalog.get("uavdt_train")


def test_missing_files_name_the_expected_path(sod2_root, write_image, one_train_sequence):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("uavdt_train")
    assert "UAV-benchmark-M" in str(e.value)
    make_sequence(sod2_root, write_image, ignore=None)
    with pytest.raises(DataFormatError, match=r"M0101_gt_ignore\.txt: file not found"):
        DatasetCatalog.get("uavdt_train")


def test_metadata():
    meta = MetadataCatalog.get("uavdt_test")
    assert tuple(meta.thing_classes) == ("car", "truck", "bus")
    assert meta.eval_protocol == "coco" and meta.evaluator_type == "sod2"
    assert meta.thing_dataset_id_to_contiguous_id == {1: 0, 2: 1, 3: 2}


def test_round_trip(sod2_root, write_image, one_train_sequence, round_trip):
    base = make_sequence(sod2_root, write_image)
    round_trip(DatasetCatalog.get("uavdt_train"), uavdt.UAVDT_CLASSES, base / "UAV-benchmark-M")
