"""The embedded synthetic dataset: determinism, content statistics, atomic generation,
registration."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from sod2.data import synthetic
from sod2.data.synthetic import SYNTHETIC_CLASSES, SyntheticConfig, ensure_synthetic, generate_synthetic

SMALL = SyntheticConfig(num_train=6, num_val=3, seed=7)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def test_deterministic(tmp_path):
    generate_synthetic(str(tmp_path / "a"), SMALL)
    generate_synthetic(str(tmp_path / "b"), SMALL)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    generate_synthetic(str(tmp_path / "c"), replace(SMALL, seed=8))
    assert _files(tmp_path / "a") != _files(tmp_path / "c")


def test_content_statistics():
    """Over the default configuration's first images: the size mix of the spec, clutter,
    clusters next to isolated objects, ignore regions, all classes."""
    rng = np.random.default_rng([SyntheticConfig().seed, 0])
    cfg = SyntheticConfig()
    sizes, classes, n_regions, clustered, isolated = [], set(), 0, 0, 0
    for _ in range(40):
        img, objects, regions = synthetic.render_image(rng, cfg)
        assert img.shape == (cfg.image_size, cfg.image_size, 3) and img.dtype == np.uint8
        n_regions += len(regions)
        centres = np.array([[o["bbox"][0] + o["bbox"][2] / 2, o["bbox"][1] + o["bbox"][3] / 2]
                            for o in objects])
        for o, c in zip(objects, centres):
            x, y, w, h = o["bbox"]
            assert 0 <= x and 0 <= y and x + w <= cfg.image_size and y + h <= cfg.image_size
            sizes.append(np.sqrt(w * h))
            classes.add(o["category_id"])
            near = (np.linalg.norm(centres - c, axis=1) < 20).sum() - 1
            clustered += near >= 3
            isolated += near == 0
        # objects never overlap ignore regions, and regions lie inside the image
        for x, y, w, h in regions:
            assert 0 <= x and x + w <= cfg.image_size
    sizes = np.array(sizes)
    assert classes == set(range(len(SYNTHETIC_CLASSES)))
    assert (sizes < 8).mean() >= 0.20
    assert ((sizes >= 8) & (sizes < 16)).mean() >= 0.30
    assert clustered > 40 and isolated > 40
    assert n_regions >= 5
    # backgrounds are cluttered and noisy: strong local variation away from objects
    assert img.std() > 15


def test_classes_differ_in_appearance():
    """Mean colour of each class's pixels is far from the others (the task is learnable)."""
    rng = np.random.default_rng(0)
    means = {c: [] for c in range(3)}
    for _ in range(20):
        img, objects, _ = synthetic.render_image(rng, SyntheticConfig())
        for o in objects:
            x, y, w, h = (int(round(v)) for v in o["bbox"])
            if w >= 10:
                means[o["category_id"]].append(img[y + h // 2, x + w // 2 - 1: x + w // 2 + 2].mean(0))
    dom = [int(np.argmax(np.mean(means[c], axis=0))) for c in range(3)]
    assert len(set(dom[:2])) == 2  # disc (red) and cross (green) differ in dominant channel


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.cv2.imwrite

    def failing(path, img):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of the dataset
        return real(path, img)

    monkeypatch.setattr(synthetic.cv2, "imwrite", failing)
    dest = tmp_path / "sod2_synthetic"
    with pytest.raises(KeyboardInterrupt):
        ensure_synthetic(str(dest), SMALL)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["sod2_synthetic.lock"]
    monkeypatch.setattr(synthetic.cv2, "imwrite", real)
    ensure_synthetic(str(dest), SMALL)
    meta = json.loads((dest / "meta.json").read_text())
    assert meta["config"]["num_train"] == 6
    ann = json.loads((dest / "annotations" / "train.json").read_text())
    assert len(ann["images"]) == 6 and ann["categories"][0]["name"] == "disc"
    # up to date: not regenerated (same mtime); a different config: regenerated
    t = (dest / "meta.json").stat().st_mtime_ns
    ensure_synthetic(str(dest), SMALL)
    assert (dest / "meta.json").stat().st_mtime_ns == t
    ensure_synthetic(str(dest), replace(SMALL, num_val=2))
    assert len(json.loads((dest / "annotations" / "val.json").read_text())["images"]) == 2


def test_registered_splits(synthetic_dataset):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    train = DatasetCatalog.get("sod2_synthetic_train")
    val = DatasetCatalog.get("sod2_synthetic_val")
    assert len(train) == SyntheticConfig().num_train and len(val) == SyntheticConfig().num_val
    meta = MetadataCatalog.get("sod2_synthetic_val")
    assert meta.thing_classes == list(SYNTHETIC_CLASSES) and meta.eval_protocol == "aitod"
    regions = [a for d in val for a in d["annotations"] if a["category_id"] == -1]
    assert regions and all(a["ignore"] == 1 and a["iscrowd"] == 1 for a in regions)
    assert {os.path.dirname(d["file_name"]) for d in val} == {
        os.path.join(synthetic.synthetic_root(), "val")}
