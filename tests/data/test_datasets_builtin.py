"""Builtin registrations: every name, metadata, laziness and idempotence."""
import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from detectron2.data import DatasetCatalog, MetadataCatalog

import sod2  # noqa: F401  (registers the datasets)
from sod2.data.datasets import builtin

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    "visdrone2019_train": "aitod", "visdrone2019_val": "aitod", "visdrone2019_test_dev": "aitod",
    "uavdt_train": "coco", "uavdt_test": "coco",
    "tinyperson_train": "tinyperson", "tinyperson_test": "tinyperson",
    "sodad_train": "sodad", "sodad_val": "sodad", "sodad_test": "sodad",
    "sodad_train_patches": "sodad", "sodad_val_patches": "sodad", "sodad_test_patches": "sodad",
    "aitod_train": "aitod", "aitod_val": "aitod", "aitod_trainval": "aitod", "aitod_test": "aitod",
    "droneswarms_train": "aitod", "droneswarms_test": "aitod",
    "hituav_train": "aitod", "hituav_val": "aitod", "hituav_test": "aitod",
    "hituav_val_part1": "aitod", "hituav_val_part2": "aitod",
}


def test_every_name_registered_with_metadata():
    assert set(builtin.BUILTIN_DATASETS) == set(EXPECTED)
    registered = set(DatasetCatalog.list())
    for name, protocol in EXPECTED.items():
        assert name in registered
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "sod2" and meta.eval_protocol == protocol
        assert meta.thing_classes and meta.dataset_root_hint.startswith("$SOD2_DATASETS/")
        mapping = getattr(meta, "thing_dataset_id_to_contiguous_id", None)
        if mapping is not None:
            assert set(mapping.values()) == set(range(len(meta.thing_classes)))
    from sod2.evaluation.protocols import PROTOCOLS
    assert set(EXPECTED.values()) <= set(PROTOCOLS)
    for split in ("train", "val", "test"):
        assert MetadataCatalog.get(f"sodad_{split}_patches").whole_image_dataset == f"sodad_{split}"


def test_registering_again_is_a_no_op(monkeypatch, tmp_path):
    monkeypatch.setenv("SOD2_DATASETS", str(tmp_path / "absent"))
    before = len(DatasetCatalog.list())
    builtin.register_all()
    importlib.reload(builtin).register_all()
    importlib.reload(importlib.import_module("sod2.data.datasets"))
    assert len(DatasetCatalog.list()) == before
    assert not (tmp_path / "absent").exists()


def test_import_reads_no_dataset_file(tmp_path, write_image):
    """In a fresh interpreter, an audit hook sees no file under $SOD2_DATASETS opened or
    listed while sod2 is imported (twice) -- and sees them once a dataset is used."""
    root = tmp_path / "datasets"
    write_image(root / "hit-uav" / "val" / "a.jpg", 16, 16, kind="gray")
    (root / "hit-uav" / "annotations").mkdir()
    (root / "hit-uav" / "annotations" / "val.json").write_text(json.dumps({
        "images": [{"id": 0, "filename": "a.jpg", "width": 16, "height": 16}], "annotation": [],
        "categories": [{"id": i, "name": n} for i, n in
                       enumerate(["Person", "Car", "Bicycle", "OtherVehicle", "DontCare"])]}))
    script = textwrap.dedent("""
        import importlib, os, sys
        root = os.environ["SOD2_DATASETS"]
        seen = []
        def hook(event, args):
            if event in ("open", "os.listdir", "os.scandir") and args and root in str(args[0]):
                seen.append((event, str(args[0])))
        sys.addaudithook(hook)
        import sod2
        import sod2.data.datasets as ds
        importlib.reload(ds)
        from detectron2.data import DatasetCatalog
        assert "hituav_val" in DatasetCatalog.list()
        assert not seen, seen
        assert len(DatasetCatalog.get("hituav_val")) == 1
        assert seen
        print("lazy-ok")
    """)
    env = dict(os.environ, SOD2_DATASETS=str(root), PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "lazy-ok" in r.stdout, r.stderr[-2000:]
