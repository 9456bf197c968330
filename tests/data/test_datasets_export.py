"""sod2-dialect export (to_sod2_json) and tools/convert_dataset.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode
from pycocotools.coco import COCO

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets.coco_style import load_coco_style_json
from sod2.data.datasets.common import IGNORE_REGION, make_annotation
from sod2.data.datasets.export import to_sod2_json
from sod2.data.datasets.visdrone import VISDRONE_CLASSES
from sod2.data.io import DataFormatError

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("car", "person")


def dicts_under(root):
    return [
        {"file_name": str(root / "sub" / "a.jpg"), "image_id": 7, "width": 100, "height": 80,
         "annotations": [make_annotation([0, 0, 10, 10], IGNORE_REGION, ignore=True),
                         make_annotation([1.25, 2, 3, 4], 1),
                         make_annotation([5, 5, 2, 2], 0, ignore=True)]},
        {"file_name": str(root / "b.jpg"), "image_id": 9, "width": 50, "height": 40,
         "annotations": []},
    ]


def test_dialect(tmp_path):
    coco = to_sod2_json(dicts_under(tmp_path), CLASSES, tmp_path)
    assert coco["categories"] == [{"id": 1, "name": "car", "supercategory": ""},
                                  {"id": 2, "name": "person", "supercategory": ""}]
    assert [(i["id"], i["file_name"], i["ignore_regions"]) for i in coco["images"]] == [
        (7, "sub/a.jpg", [[0.0, 0.0, 10.0, 10.0]]), (9, "b.jpg", [])]
    assert coco["annotations"] == [
        {"id": 1, "image_id": 7, "category_id": 2, "bbox": [1.25, 2.0, 3.0, 4.0], "area": 12.0,
         "iscrowd": 0, "ignore": 0},
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [5.0, 5.0, 2.0, 2.0], "area": 4.0,
         "iscrowd": 1, "ignore": 1}]
    # plain pycocotools reads it and sees the ignored box as crowd
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(coco))
    gt = COCO(str(path))
    assert [a["iscrowd"] for a in gt.loadAnns(gt.getAnnIds(imgIds=[7]))] == [0, 1]


def test_round_trip_and_box_modes(tmp_path):
    dicts = dicts_under(tmp_path)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(to_sod2_json(dicts, CLASSES, tmp_path)))
    assert load_coco_style_json(str(path), str(tmp_path), CLASSES) == dicts
    xyxy = [dict(dicts[0], annotations=[{"bbox": [1, 2, 4, 6], "bbox_mode": BoxMode.XYXY_ABS,
                                         "category_id": 0, "iscrowd": 0}])]
    assert to_sod2_json(xyxy, CLASSES, tmp_path)["annotations"][0]["bbox"] == [1.0, 2.0, 3.0, 4.0]


def test_bad_input(tmp_path):
    dicts = dicts_under(tmp_path / "x")
    with pytest.raises(DataFormatError, match="not under the image root"):
        to_sod2_json(dicts, CLASSES, tmp_path / "y")
    dicts[0]["annotations"][1]["category_id"] = 2
    with pytest.raises(DataFormatError, match=r"a\.jpg\): annotation #1: category_id 2"):
        to_sod2_json(dicts, CLASSES, tmp_path / "x")
    with pytest.raises(ValueError, match="ignore regions"):
        to_sod2_json([], ("car", "DontCare"), tmp_path)
    renumbered = to_sod2_json([dict(d, image_id=f"s{k}") for k, d in enumerate(dicts_under(tmp_path))],
                              CLASSES, tmp_path)
    assert [i["id"] for i in renumbered["images"]] == [1, 2]


def make_visdrone(root, write_image, bad_second=False):
    base = root / "VisDrone" / "VisDrone2019-DET-val"
    (base / "annotations").mkdir(parents=True)
    write_image(base / "images" / "a.jpg", 40, 30)
    write_image(base / "images" / "b.jpg", 40, 30, kind="gray")
    (base / "annotations" / "a.txt").write_text("1,1,5,5,1,1,0,0\n2,2,4,4,0,4,0,0\n0,0,9,9,0,0,0,0\n"
                                                "35,25,10,10,1,4,0,0\n")
    (base / "annotations" / "b.txt").write_text("1,1,5\n" if bad_second else "")
    return base


def test_convert_cli_writes_summary_and_loads_back(sod2_root, write_image, convert_tool, capsys, tmp_path):
    base = make_visdrone(sod2_root, write_image)
    out = tmp_path / "out" / "val.json"
    assert convert_tool.main(["visdrone", "--split", "val", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    for line in ("images: 2 (1 without objects)", "pedestrian: 1", "car: 1",
                 "ignored boxes: 1 (car 1)", "ignore regions: 1", "clipped: 1"):
        assert line in text, text
    loaded = load_coco_style_json(str(out), str(base / "images"), VISDRONE_CLASSES)
    assert loaded == DatasetCatalog.get("visdrone2019_val")
    assert os.listdir(out.parent) == ["val.json"]


def test_failed_conversion_leaves_no_file(sod2_root, write_image, convert_tool, capsys, tmp_path):
    make_visdrone(sod2_root, write_image, bad_second=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "val.json"
    assert convert_tool.main(["visdrone", "--root", str(sod2_root / "VisDrone"), "--split", "val",
                              "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert "b.txt: line 1" in err and "expected at least 6" in err
    assert os.listdir(out_dir) == []


def test_interrupted_write_leaves_no_partial_file(sod2_root, write_image, convert_tool, tmp_path,
                                                  monkeypatch):
    make_visdrone(sod2_root, write_image)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.json").write_text("old")

    def dump_then_die(obj, f, **kw):
        f.write('{"images": [')
        raise KeyboardInterrupt

    monkeypatch.setattr("sod2.data.io.json.dump", dump_then_die)
    with pytest.raises(KeyboardInterrupt):
        convert_tool.main(["visdrone", "--split", "val", "--output", str(out_dir / "keep.json")])
    assert os.listdir(out_dir) == ["keep.json"]
    assert (out_dir / "keep.json").read_text() == "old"


def test_tinyperson_keep_dense_option(sod2_root, write_image, write_json, convert_tool, tmp_path):
    tiny = sod2_root / "TinyPerson" / "tiny_set"
    write_image(tiny / "train" / "a.jpg", 30, 20)
    write_image(tiny / "train" / "d.jpg", 30, 20)
    write_json(tiny / "annotations" / "tiny_set_train.json", {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 30, "height": 20},
                   {"id": 1, "file_name": "d.jpg", "width": 30, "height": 20}],
        "annotations": [{"id": 0, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2],
                         "in_dense_image": True}],
        "categories": [{"id": 1, "name": "sea_person"}]})
    for extra, n in (([], 1), (["--keep-dense"], 2)):
        out = tmp_path / f"t{n}.json"
        assert convert_tool.main(["tinyperson", "--split", "train", "--output", str(out)] + extra) == 0
        assert len(json.loads(out.read_text())["images"]) == n


def test_script_runs_from_a_checkout(tmp_path, write_image):
    """`python tools/convert_dataset.py ...` works without installing sod2."""
    base = make_visdrone(tmp_path / "ds", write_image)
    out = tmp_path / "val.json"
    r = subprocess.run([sys.executable, "tools/convert_dataset.py", "visdrone", "--root",
                        str(base.parent), "--split", "val", "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "images: 2" in r.stdout and out.is_file()


def test_tinyperson_threshold_and_logo_options(sod2_root, write_image, write_json, convert_tool, tmp_path):
    tiny = sod2_root / "TinyPerson" / "tiny_set"
    write_image(tiny / "train" / "a.jpg", 30, 20)
    anns = [{"id": k, "image_id": 0, "category_id": 1, "bbox": [1, 1, 2, 2]} for k in range(3)]
    anns[0]["logo"] = True
    write_json(tiny / "annotations" / "tiny_set_train.json", {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 30, "height": 20}],
        "annotations": anns, "categories": [{"id": 1, "name": "sea_person"}]})
    runs = {"default": [], "thr2": ["--dense-threshold", "2"], "logo": ["--logo-as-person"]}
    got = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        assert convert_tool.main(["tinyperson", "--split", "train", "--output", str(out)] + extra) == 0
        got[name] = json.loads(out.read_text())
    assert [a.get("ignore", 0) for a in got["default"]["annotations"]] == [1, 0, 0]
    assert got["thr2"]["images"] == []  # 3 boxes > 2: dense
    assert [a.get("ignore", 0) for a in got["logo"]["annotations"]] == [0, 0, 0]
