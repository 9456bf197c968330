"""HIT-UAV (its own JSON dialect): synthetic files, the repository's 17-image subset of the
real val split (tests/fixtures/hituav-subset) and, when $SOD2_DATASETS has it, the full split.
HIT-UAV: CC BY 4.0, Suo et al., Scientific Data 10, 227 (2023)."""
import collections

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.common import IGNORE_REGION
from sod2.data.datasets.hituav import HITUAV_CLASSES, load_hituav
from sod2.data.io import DataFormatError, read_image

from ..conftest import HITUAV_SUBSET, HITUAV_VAL_IMAGES, hituav_root

CATEGORIES = [{"id": i, "name": n, "supercategory": n} for i, n in
              enumerate(["Person", "Car", "Bicycle", "OtherVehicle", "DontCare"])]


def make_split(root, write_image, write_json, split="train", annotations=None):
    base = root / "hit-uav"
    write_image(base / split / "0_60_30_0_00001.jpg", 64, 52, kind="gray")
    write_image(base / split / "1_60_30_0_00002.jpg", 64, 52, kind="gray")
    if annotations is None:
        annotations = [
            {"id": 0, "image_id": 0, "category_id": 0, "bbox": [3, 4, 5, 6], "area": 30},
            {"id": 1, "image_id": 0, "category_id": 4, "bbox": [40, 40, 10, 10], "area": 100},
            {"id": 2, "image_id": 0, "category_id": 3, "bbox": [20, 20, 12, 8], "area": 96},
        ]
    write_json(base / "annotations" / f"{split}.json", {
        "info": {}, "licenses": [], "categories": CATEGORIES,
        "images": [{"filename": "0_60_30_0_00001.jpg", "width": 64, "height": 52, "id": 0},
                   {"filename": "1_60_30_0_00002.jpg", "width": 64, "height": 52, "id": 1}],
        "annotation": annotations})
    return base


def test_dialect_keys_zero_based_ids_and_dontcare(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json)
    dicts = DatasetCatalog.get("hituav_train")
    got = [(a["category_id"], a["bbox"], a["ignore"]) for a in dicts[0]["annotations"]]
    assert got == [(IGNORE_REGION, [40.0, 40.0, 10.0, 10.0], 1),
                   (0, [3.0, 4.0, 5.0, 6.0], 0), (3, [20.0, 20.0, 12.0, 8.0], 0)]
    assert dicts[1]["annotations"] == []
    img = read_image(dicts[0]["file_name"])  # 8-bit grayscale JPEG
    assert img.shape == (52, 64, 3) and img.dtype == np.uint8


def test_unknown_category_id(sod2_root, write_image, write_json):
    make_split(sod2_root, write_image, write_json, split="test", annotations=[
        {"id": 7, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]}])
    with pytest.raises(DataFormatError, match=r"test\.json: annotation #0 \(id 7\): unknown category id 5"):
        DatasetCatalog.get("hituav_test")


def test_missing_files(sod2_root):
    with pytest.raises(DataFormatError, match="datasets/README.md") as e:
        DatasetCatalog.get("hituav_val")
    assert str(sod2_root / "hit-uav" / "annotations" / "val.json") in str(e.value)


def test_metadata():
    meta = MetadataCatalog.get("hituav_val")
    assert tuple(meta.thing_classes) == HITUAV_CLASSES
    assert meta.thing_dataset_id_to_contiguous_id == {0: 0, 1: 1, 2: 2, 3: 3}
    assert meta.eval_protocol == "aitod"


def test_real_val_subset(hituav_subset_datasets, round_trip):
    """The repository's 17 real images: the dialect, DontCare regions, an image without
    objects, grayscale JPEGs loaded as 3 channels."""
    root = hituav_subset_datasets
    dicts = DatasetCatalog.get("hituav_val")
    assert len(dicts) == 17
    counts = collections.Counter(a["category_id"] for d in dicts for a in d["annotations"])
    assert {HITUAV_CLASSES[c]: n for c, n in counts.items() if c >= 0} == {
        "Person": 64, "Car": 69, "Bicycle": 31, "OtherVehicle": 3}
    assert counts[IGNORE_REGION] == 6
    assert sum(1 for d in dicts if not d["annotations"]) == 1
    assert all((d["width"], d["height"]) == (640, 512) for d in dicts)
    img = read_image(dicts[0]["file_name"])
    assert img.shape == (512, 640, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all()  # grayscale replicated
    round_trip(dicts, HITUAV_CLASSES, root / "hit-uav" / "val")


def test_real_val_fixture_selection(tmp_path, monkeypatch):
    """hituav_datasets falls back to the subset: hituav_root() finds only a full val split."""
    monkeypatch.setenv("SOD2_DATASETS", str(HITUAV_SUBSET))
    assert hituav_root() is None  # 17 images: not the full split
    monkeypatch.delenv("SOD2_DATASETS")
    assert hituav_root() is None
    base = tmp_path / "hit-uav"
    (base / "annotations").mkdir(parents=True)
    (base / "annotations" / "val.json").write_text("{}")
    (base / "val").mkdir()
    for i in range(HITUAV_VAL_IMAGES):
        (base / "val" / f"{i}.jpg").touch()
    monkeypatch.setenv("SOD2_DATASETS", str(tmp_path))
    assert hituav_root() == tmp_path


def test_real_val_subset_is_unchanged(hituav_full_datasets):
    """The subset's records are those of the full split for the same images (files and
    annotations copied unchanged)."""
    full = {d["file_name"].rsplit("/", 1)[-1]: d for d in DatasetCatalog.get("hituav_val")}
    sub_root = HITUAV_SUBSET / "hit-uav"
    sub = load_hituav(str(sub_root / "annotations" / "val.json"), str(sub_root / "val"))
    assert len(sub) == 17
    for d in sub:
        name = d["file_name"].rsplit("/", 1)[-1]
        ref = full[name]
        assert {k: v for k, v in d.items() if k != "file_name"} == \
            {k: v for k, v in ref.items() if k != "file_name"}, name
        assert (sub_root / "val" / name).read_bytes() == open(ref["file_name"], "rb").read(), name


def test_real_val_sample(hituav_full_datasets, round_trip):
    """The full val split (290 images), when $SOD2_DATASETS has it."""
    root = hituav_full_datasets
    dicts = DatasetCatalog.get("hituav_val")
    assert len(dicts) == 290
    counts = collections.Counter(a["category_id"] for d in dicts for a in d["annotations"])
    assert {HITUAV_CLASSES[c]: n for c, n in counts.items() if c >= 0} == {
        "Person": 1168, "Car": 719, "Bicycle": 554, "OtherVehicle": 12}
    assert counts[IGNORE_REGION] == 7
    assert sum(1 for d in dicts if not d["annotations"]) == 3
    assert all((d["width"], d["height"]) == (640, 512) for d in dicts)
    img = read_image(dicts[0]["file_name"])
    assert img.shape == (512, 640, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all()  # grayscale replicated
    round_trip(dicts, HITUAV_CLASSES, root / "hit-uav" / "val")


def test_val_parts_for_cpu_experiments(hituav_full_datasets):
    a = DatasetCatalog.get("hituav_val_part1")
    b = DatasetCatalog.get("hituav_val_part2")
    assert len(a) == 200 and len(b) == 90
    assert not {d["file_name"] for d in a} & {d["file_name"] for d in b}
    assert [d["file_name"] for d in a] == sorted(d["file_name"] for d in a)
