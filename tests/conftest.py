"""Shared fixtures: a temporary $SOD2_DATASETS and writers for tiny images and json."""
import importlib.util
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_HITUAV = REPO.parent / "shared" / "data" / "hit-uav"


def hituav_root():
    """A folder holding ``hit-uav/`` (the real val sample): $SOD2_DATASETS if it has it,
    else ../shared/data. None if neither has it."""
    env = os.environ.get("SOD2_DATASETS")
    if env and (Path(env) / "hit-uav" / "annotations" / "val.json").is_file():
        return Path(env)
    if (SHARED_HITUAV / "annotations" / "val.json").is_file():
        return SHARED_HITUAV.parent
    return None


@pytest.fixture
def hituav_datasets(monkeypatch, tmp_path):
    """$SOD2_DATASETS pointing at a folder with the real HIT-UAV val sample (CC BY 4.0,
    Suo et al., Scientific Data 10, 227 (2023)); skips when it is absent. The shared
    sample is linked from a temporary folder, never written to."""
    root = hituav_root()
    if root is None:
        pytest.skip("HIT-UAV val sample not found (../shared/data/hit-uav or $SOD2_DATASETS/hit-uav)")
    if root == SHARED_HITUAV.parent:
        root = tmp_path / "datasets_with_hituav"
        root.mkdir()
        (root / "hit-uav").symlink_to(SHARED_HITUAV, target_is_directory=True)
    monkeypatch.setenv("SOD2_DATASETS", str(root))
    return root


@pytest.fixture
def sod2_root(tmp_path, monkeypatch):
    """An empty $SOD2_DATASETS folder for this test."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("SOD2_DATASETS", str(root))
    return root


def _write_image(path, width, height, kind="color"):
    """Write a small image; kind: "color" (8-bit BGR), "gray" (8-bit), "gray16" (16-bit PNG)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if kind == "color":
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    elif kind == "gray":
        img = rng.integers(0, 256, (height, width), dtype=np.uint8)
    elif kind == "gray16":
        img = rng.integers(20000, 30000, (height, width), dtype=np.uint16)
    else:
        raise ValueError(kind)
    assert cv2.imwrite(str(path), img), path
    return path


def _write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture
def write_image():
    return _write_image


@pytest.fixture
def write_json():
    return _write_json


@pytest.fixture(scope="session")
def convert_tool():
    """tools/convert_dataset.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("convert_dataset", REPO / "tools" / "convert_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_round_trip(dicts, class_names, image_root, tmp_path, **load_kwargs):
    """Export ``dicts`` to the sod2 dialect, reload them, and require identical dicts."""
    from sod2.data.datasets.coco_style import load_coco_style_json
    from sod2.data.datasets.export import to_sod2_json

    out = _write_json(Path(tmp_path) / "roundtrip.json", to_sod2_json(dicts, class_names, image_root))
    assert load_coco_style_json(str(out), str(image_root), class_names, **load_kwargs) == dicts


@pytest.fixture
def round_trip(tmp_path):
    return lambda dicts, class_names, image_root: assert_round_trip(dicts, class_names, image_root, tmp_path)


@pytest.fixture(scope="session")
def synthetic_dataset():
    """The registered embedded dataset, generated once under $SOD2_DATASETS if needed."""
    from detectron2.data import DatasetCatalog

    import sod2  # noqa: F401

    DatasetCatalog.get("sod2_synthetic_val")
    return "sod2_synthetic"
