"""is_ignored / is_ignore_region (sod2.data.datasets.common) on hand-built annotations, and
the training and inference mappers that use them: a region or box flagged only by COCO's
``iscrowd`` (no sod2 ``ignore`` key) is treated as sod2's own."""
import cv2
import numpy as np
import pytest
from detectron2.structures import BoxMode

from sod2.data.datasets.common import IGNORE_REGION, is_ignore_region, is_ignored, make_annotation
from sod2.data.mapper import SODDatasetMapper
from sod2.inference import FillIgnoreMapper


@pytest.mark.parametrize("ann,ignored,region", [
    ({"category_id": 0, "iscrowd": 0, "ignore": 0}, False, False),  # an object
    ({"category_id": 2}, False, False),  # no flags: an object
    ({"category_id": 1, "iscrowd": 1, "ignore": 1}, True, False),  # sod2's class-specific ignored box
    ({"category_id": 3, "iscrowd": 1}, True, False),  # a COCO crowd box
    ({"category_id": 0, "ignore": True, "iscrowd": False}, True, False),  # ignore only, booleans
    ({"category_id": -1, "iscrowd": 1, "ignore": 1}, True, True),  # sod2's class-agnostic region
    ({"category_id": -1, "iscrowd": 1}, True, True),  # a region flagged the COCO way only
    ({"category_id": -1, "ignore": 1}, True, True),
    ({"category_id": -1, "iscrowd": 0, "ignore": 0}, False, False),  # unflagged -1: not a region
    ({"category_id": -2, "ignore": 1}, True, False),  # only -1 is IGNORE_REGION
])
def test_ignore_predicates(ann, ignored, region):
    assert is_ignored(ann) is ignored
    assert is_ignore_region(ann) is region


def test_ignore_predicates_on_make_annotation():
    assert IGNORE_REGION == -1
    assert not is_ignored(make_annotation([0, 0, 2, 2], 0))
    assert is_ignored(make_annotation([0, 0, 2, 2], 0, ignore=True))
    assert not is_ignore_region(make_annotation([0, 0, 2, 2], 0, ignore=True))
    assert is_ignore_region(make_annotation([0, 0, 2, 2], IGNORE_REGION, ignore=True))


def _record(tmp_path):
    """A 40 x 30 image of value 200; a region flagged only by iscrowd (x 0..20, y 0..10), an
    object inside it (x 4..8, y 2..6), a crowd box flagged only by iscrowd."""
    path = str(tmp_path / "img.png")
    cv2.imwrite(path, np.full((30, 40, 3), 200, np.uint8))
    xywh = BoxMode.XYWH_ABS
    return {"file_name": path, "width": 40, "height": 30, "image_id": 1, "annotations": [
        {"bbox": [0, 0, 20, 10], "bbox_mode": xywh, "category_id": -1, "iscrowd": 1},
        {"bbox": [4, 2, 4, 4], "bbox_mode": xywh, "category_id": 0, "iscrowd": 0},
        {"bbox": [25, 15, 10, 10], "bbox_mode": xywh, "category_id": 1, "iscrowd": 1}]}


def _painted(image_chw):
    """(H, W) bool: pixels painted with fill 0."""
    return (image_chw.numpy() == 0).all(0)


def test_training_mapper_paints_and_separates_crowd_flagged_annotations(tmp_path):
    mapper = SODDatasetMapper(True, augmentations=[], image_format="BGR", ignore_fill=(0, 0, 0))
    out = mapper(_record(tmp_path))
    expected = np.zeros((30, 40), bool)
    expected[0:10, 0:20] = True
    expected[2:6, 4:8] = False  # the object stays visible
    assert np.array_equal(_painted(out["image"]), expected)
    assert out["instances"].gt_classes.tolist() == [0]
    assert out["instances"].gt_boxes.tensor.tolist() == [[4.0, 2.0, 8.0, 6.0]]
    assert sorted(out["ignore_instances"].gt_classes.tolist()) == [-1, 1]


def test_inference_fill_mapper_paints_crowd_flagged_region(tmp_path):
    inner = SODDatasetMapper(False, augmentations=[], image_format="BGR")
    out = FillIgnoreMapper(inner, fill=(0, 0, 0))(_record(tmp_path))
    assert _painted(out["image"]).sum() == 20 * 10 - 4 * 4
