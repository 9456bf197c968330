"""Shared fixtures: a temporary $SOD2_DATASETS, real HIT-UAV images (the repository's subset,
or the full val split when $SOD2_DATASETS has it), and writers for tiny images and json.
Every file the tests read is in the repository (tests/fixtures/)."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
# 17 images of HIT-UAV's val split with their annotations (CC BY 4.0, Suo et al., Scientific
# Data 10, 227 (2023)), kept in the repository: tests/fixtures/hituav-subset/hit-uav/README.md
HITUAV_SUBSET = FIXTURES / "hituav-subset"
HITUAV_VAL_IMAGES = 290  # the full val split
HITUAV_FIXTURES = ("hituav_datasets", "hituav_full_datasets", "hituav_subset_datasets")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state (torch, numpy, random), whatever ran
    before it: a test that depends on random weights or data gives the same answer in every
    order and on every run."""
    import random

    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _loggers_restored():
    """A test that runs the trainer's setup (Detectron2's ``setup_logger``) leaves the "sod2"
    and "detectron2" loggers with their own handlers and no propagation, which hides later
    tests' records from ``caplog``; each test gets them back as they were."""
    import logging

    saved = {n: (lg.propagate, list(lg.handlers), lg.level)
             for n, lg in ((n, logging.getLogger(n)) for n in ("sod2", "detectron2", "fvcore", "d2"))}
    yield
    for n, (propagate, handlers, level) in saved.items():
        lg = logging.getLogger(n)
        lg.propagate, lg.handlers[:], lg.level = propagate, handlers, level


def pytest_collection_modifyitems(config, items):
    """Tests on the real HIT-UAV images are marked ``realdata`` (with the fixture-file tests
    that carry the marker themselves): the set .ci/run reruns from a copy of the checkout."""
    for item in items:
        if set(getattr(item, "fixturenames", ())) & set(HITUAV_FIXTURES):
            item.add_marker(pytest.mark.realdata)


def hituav_root():
    """A folder holding the full HIT-UAV val split as ``hit-uav/`` (290 images and
    ``annotations/val.json``): $SOD2_DATASETS if it has it, else None."""
    env = os.environ.get("SOD2_DATASETS")
    if not env:
        return None
    base = Path(env) / "hit-uav"
    if not (base / "annotations" / "val.json").is_file() or not (base / "val").is_dir():
        return None
    if sum(1 for _ in (base / "val").glob("*.jpg")) != HITUAV_VAL_IMAGES:
        return None
    return Path(env)


def _use_hituav(root, monkeypatch, tmp_path):
    """Point $SOD2_DATASETS at a temporary folder that links ``root/hit-uav`` (never written to)."""
    link_root = tmp_path / "datasets_with_hituav"
    link_root.mkdir()
    (link_root / "hit-uav").symlink_to(root / "hit-uav", target_is_directory=True)
    monkeypatch.setenv("SOD2_DATASETS", str(link_root))
    return link_root


@pytest.fixture
def hituav_full_datasets(monkeypatch, tmp_path):
    """$SOD2_DATASETS with the full HIT-UAV val split (290 images); skips when
    $SOD2_DATASETS/hit-uav does not hold it."""
    root = hituav_root()
    if root is None:
        pytest.skip("the full HIT-UAV val split is not in $SOD2_DATASETS/hit-uav")
    return _use_hituav(root, monkeypatch, tmp_path)


@pytest.fixture
def hituav_subset_datasets(monkeypatch, tmp_path):
    """$SOD2_DATASETS with the repository's 17-image HIT-UAV val subset."""
    return _use_hituav(HITUAV_SUBSET, monkeypatch, tmp_path)


@pytest.fixture
def hituav_datasets(monkeypatch, tmp_path):
    """$SOD2_DATASETS with real HIT-UAV val images: the full split when $SOD2_DATASETS has it,
    else the repository's subset. Tests using it must hold for both."""
    return _use_hituav(hituav_root() or HITUAV_SUBSET, monkeypatch, tmp_path)


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
    from .modules import tool_module

    return tool_module("convert_dataset")


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
