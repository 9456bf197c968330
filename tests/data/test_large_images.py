"""Large-image evaluation sets (sod2/data/large_images.py, tools/make_large_image_set.py):
determinism, content, slice occupancy against a hand count and sod2's slicer, HIT-UAV mosaics
against their source frames (boxes, pixels, empty tiles), registration, the tool's errors."""
import json
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from sod2.data import large_images
from sod2.data.datasets.common import is_ignored
from sod2.data.io import DataFormatError, read_image
from sod2.data.large_images import (SAMPLE_HITUAV, HituavMosaicConfig, LargeSyntheticConfig,
                                    empty_slice_fraction, generate_hituav_mosaics,
                                    generate_large_synthetic, render_large_image)
from sod2.data.synthetic import SUPERSAMPLING, draw_object
from sod2.errors import UserError
from sod2.inference.slicing import slice_windows
from tests.modules import tool_module

SMALL = LargeSyntheticConfig(num_images=2, width=640, height=480, seed=5, background_block=128)
MOSAIC = HituavMosaicConfig(num_images=2, grid=(2, 3), empty_tiles=2, seed=3)


def _files(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(dirpath, n), "rb") as f:
                out[os.path.relpath(os.path.join(dirpath, n), root)] = f.read()
    return out


def _json(root):
    with open(os.path.join(root, "annotations", "val.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------------------ synthetic


def test_synthetic_deterministic_and_per_image(tmp_path):
    generate_large_synthetic(str(tmp_path / "a"), SMALL)
    generate_large_synthetic(str(tmp_path / "b"), SMALL)
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b")
    assert sorted(a) == ["annotations/val.json", "meta.json", "val/00000.png", "val/00001.png"]
    generate_large_synthetic(str(tmp_path / "c"), replace(SMALL, seed=6))
    assert _files(tmp_path / "c")["val/00000.png"] != a["val/00000.png"]
    # image i depends on (seed, i) only: a shorter set is a prefix
    generate_large_synthetic(str(tmp_path / "d"), replace(SMALL, num_images=1))
    assert _files(tmp_path / "d")["val/00000.png"] == a["val/00000.png"]


def test_draw_local_equals_drawing_on_the_whole_4x_canvas():
    """Objects drawn on local patches give the pixels and boxes of the embedded generator's
    recipe applied to the whole image (each pixel repeated 4x4, drawn, area-downsampled)."""
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (60, 90, 3)).astype(np.float32)
    shapes = [(0, 20.3, 15.7, 9.5, (250.0, 60.0, 30.0)), (1, 61.0, 40.2, 5.2, (40.0, 220.0, 60.0)),
              (2, 84.0, 55.0, 11.0, (50.0, 120.0, 240.0))]  # the last one touches the border
    k = SUPERSAMPLING
    whole = np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    want_boxes = [draw_object(whole, *s) for s in shapes]
    want = cv2.resize(whole, (90, 60), interpolation=cv2.INTER_AREA)
    got = img.copy()
    got_boxes = [large_images._draw_local(got, [s])[0] for s in shapes]
    np.testing.assert_allclose(got_boxes, want_boxes, atol=1e-9)
    np.testing.assert_allclose(got, want, atol=1e-3)
    changed = np.abs(got - img).max(axis=2) > 1e-3
    for x, y, w, h in got_boxes:  # every object changed pixels inside its box
        assert changed[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))].any()
    outside = np.ones_like(changed)
    for x, y, w, h in got_boxes:
        outside[max(0, int(y) - 1):int(np.ceil(y + h)) + 1, max(0, int(x) - 1):int(np.ceil(x + w)) + 1] = False
    assert not changed[outside].any()


def test_synthetic_content():
    """Boxes inside the image, the embedded data's classes and sizes (4-12 px in clusters,
    4-40 px isolated), tight clusters next to isolated objects, no overlaps, crowds as
    ignore regions, and most of the image far from any object."""
    cfg = LargeSyntheticConfig(width=1200, height=900, seed=11, background_block=256, crowds=(1, 2))
    sizes, classes, n_regions, clustered, isolated = [], set(), 0, 0, 0
    for i in range(3):
        img, objects, regions = render_large_image(np.random.default_rng([cfg.seed, i]), cfg)
        assert img.shape == (900, 1200, 3) and img.dtype == np.uint8
        assert 40 < img.mean() < 200 and img.std() > 10  # clutter, not a flat image
        assert 1 <= len(regions) <= 2
        n_regions += len(regions)
        boxes = np.array([o["bbox"] for o in objects])
        assert ((boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 0] + boxes[:, 2] <= 1200)
                & (boxes[:, 1] + boxes[:, 3] <= 900)).all()
        np.testing.assert_allclose(boxes[:, 2], boxes[:, 3])  # square boxes, as in the embedded data
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        for j, (b, c) in enumerate(zip(boxes, centres)):
            sizes.append(b[2])
            classes.add(objects[j]["category_id"])
            near = (np.linalg.norm(centres - c, axis=1) < 40).sum() - 1
            clustered += near >= 3
            isolated += near == 0
            others = np.delete(boxes, j, axis=0)
            assert not ((others[:, 0] < b[0] + b[2]) & (b[0] < others[:, 0] + others[:, 2])
                        & (others[:, 1] < b[1] + b[3]) & (b[1] < others[:, 1] + others[:, 3])).any()
            for rx, ry, rw, rh in regions:
                assert not (rx < b[0] + b[2] and b[0] < rx + rw and ry < b[1] + b[3] and b[1] < ry + rh)
        # most of the area is more than 100 px from every object
        yy, xx = np.mgrid[0:900:10, 0:1200:10]
        d = np.min(np.hypot(xx[..., None] - centres[:, 0], yy[..., None] - centres[:, 1]), axis=-1)
        assert (d > 100).mean() > 0.5
    sizes = np.array(sizes)
    assert classes == {0, 1, 2}
    assert sizes.min() >= 4 - 1e-6 and sizes.max() <= 40 + 1e-6
    assert (sizes < 8).mean() >= 0.2 and ((sizes >= 8) & (sizes < 16)).mean() >= 0.3
    assert clustered >= 20 and isolated >= 3 and n_regions >= 3


def test_config_errors_name_the_value():
    with pytest.raises(UserError, match=r"image size \(width, height\) must be at least 128, got \(4000, 100\)"):
        LargeSyntheticConfig(height=100)
    with pytest.raises(UserError, match="number of images must be at least 1, got 0"):
        LargeSyntheticConfig(num_images=0)
    with pytest.raises(UserError, match=r"isolated must be a \(low, high\) range"):
        LargeSyntheticConfig(isolated=(5, 2))
    with pytest.raises(UserError, match=r"empty tiles must be in \[0, 4\) for a 2x2 grid, got 4"):
        HituavMosaicConfig(grid=(2, 2), empty_tiles=4)
    with pytest.raises(UserError, match=r"min_crop must be in \(0, 1\], got nan"):
        HituavMosaicConfig(min_crop=float("nan"))
    with pytest.raises(UserError, match="skip_frames must be at least 0, got -1"):
        HituavMosaicConfig(skip_frames=-1)


# ---------------------------------------------------------------------------- slice occupancy


def _ann(box, ignore=False, cid=0):
    return {"bbox": list(box), "category_id": -1 if ignore == "region" else cid, "ignore": int(bool(ignore)),
            "iscrowd": int(bool(ignore))}


def test_empty_slice_fraction_hand_count():
    """1000 x 700 image, 640 px slices, overlap 0.2 (stride 512): x origins 0, 360 (snapped),
    y origins 0, 60 (snapped); windows A (0,0), B (360,0), C (0,60), D (360,60)."""
    d = {"width": 1000, "height": 700, "annotations": [
        _ann([10, 10, 10, 10]),              # A only (y < 60)
        _ann([900, 690, 5, 5]),              # D only (y > 640, x > 360)
        _ann([500, 300, 20, 20], True),      # ignored box: counts for nothing
        _ann([350, 650, 10, 10], "region"),  # ignore region: counts for nothing
        _ann([355, 20, 5, 5]),               # A only: ends at x = 360, B starts there
    ]}
    assert empty_slice_fraction([d], 640) == (2, 4)  # B and C
    d2 = {"width": 300, "height": 200, "annotations": []}  # smaller than a slice: one, empty
    assert empty_slice_fraction([d, d2], 640) == (3, 5)
    # 800 px: x origins 0, 200; y: one (700 <= 800); the first box is in both, so none empty
    assert empty_slice_fraction([d], 800) == (0, 2)


def test_empty_slice_fraction_matches_sod2_slicer(tmp_path):
    generate_large_synthetic(str(tmp_path / "s"), replace(SMALL, width=1500, height=1100, num_images=1))
    from sod2.data.datasets.coco_style import load_coco_style_json
    dicts = load_coco_style_json(str(tmp_path / "s/annotations/val.json"), str(tmp_path / "s"),
                                 ("disc", "cross", "ring"))
    for size in (640, 320):
        empty = total = 0
        for d in dicts:
            boxes = [a["bbox"] for a in d["annotations"] if not is_ignored(a)]
            for x0, y0, x1, y1 in slice_windows(d["height"], d["width"], size, 0.2).tolist():
                total += 1
                empty += not any(x < x1 and x + w > x0 and y < y1 and y + h > y0 for x, y, w, h in boxes)
        assert empty_slice_fraction(dicts, size) == (empty, total)
    assert 0 < empty < total  # 320 px slices: some hold objects, some not


# -------------------------------------------------------------------------------- mosaics


def _source():
    with open(os.path.join(SAMPLE_HITUAV, "annotations", "val.json")) as f:
        raw = json.load(f)
    by_name = {i["filename"]: i for i in raw["images"]}
    anns = {}
    for a in raw["annotation"]:
        anns.setdefault(a["image_id"], []).append(a)
    return by_name, anns, {c["id"]: c["name"] for c in raw["categories"]}


def test_mosaic_tiles_against_their_source_frames(tmp_path):
    """Read independently from the sample's raw HIT-UAV file: each object tile is its frame
    pixel for pixel with every annotation shifted by the tile offset; each empty tile holds no
    annotation and is a whole unannotated frame or an annotation-free crop scaled to the tile."""
    generate_hituav_mosaics(str(tmp_path / "m"), MOSAIC, source=SAMPLE_HITUAV)
    coco = _json(tmp_path / "m")
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert list(names.values()) == ["Person", "Car", "Bicycle", "OtherVehicle"]
    by_name, src_anns, src_names = _source()
    assert len(coco["images"]) == 2
    for entry in coco["images"]:
        assert (entry["width"], entry["height"]) == (3 * 640, 2 * 512)
        mosaic = read_image(str(tmp_path / "m" / entry["file_name"]))
        anns = [a for a in coco["annotations"] if a["image_id"] == entry["id"]]
        # (x, y, w, h, class name or "DontCare", ignored)
        got = sorted([tuple(a["bbox"]) + (names[a["category_id"]], a["ignore"]) for a in anns]
                     + [tuple(r) + ("DontCare", 1) for r in entry["ignore_regions"]])
        want, kinds = [], []
        assert sorted((t["row"], t["col"]) for t in entry["tiles"]) == [(r, c) for r in range(2) for c in range(3)]
        for t in entry["tiles"]:
            ox, oy = t["col"] * 640, t["row"] * 512
            tile = mosaic[oy:oy + 512, ox:ox + 640]
            frame = read_image(os.path.join(SAMPLE_HITUAV, "val", t["source"]))
            fanns = src_anns.get(by_name[t["source"]]["id"], [])
            kinds.append(t["kind"])
            if t["kind"] == "objects":
                assert t["crop"] == [0, 0, 640, 512]
                assert np.array_equal(tile, frame)
                for a in fanns:
                    x, y, w, h = a["bbox"]
                    assert np.array_equal(mosaic[oy + y:oy + y + h, ox + x:ox + x + w], frame[y:y + h, x:x + w])
                    want.append((x + ox, y + oy, w, h, src_names[a["category_id"]],
                                 int(src_names[a["category_id"]] == "DontCare")))
                continue
            x, y, w, h = t["crop"]
            assert w / 640 == pytest.approx(h / 512, abs=0.01) and w >= 320
            for a in fanns:  # the crop keeps 2 px away from every annotation of its frame
                bx, by, bw, bh = a["bbox"]
                assert bx + bw + 2 <= x or x + w <= bx - 2 or by + bh + 2 <= y or y + h <= by - 2
            assert (t["kind"] == "empty frame") == (not fanns)
            expect = cv2.resize(frame[y:y + h, x:x + w], (640, 512), interpolation=cv2.INTER_LINEAR)
            assert np.array_equal(tile, expect)
            # no box or region of the mosaic touches an empty tile
            for bx, by, bw, bh, *_ in got:
                assert bx + bw <= ox or ox + 640 <= bx or by + bh <= oy or oy + 512 <= by
        assert got == sorted(want)
        # no frame twice: 16 frames with objects for 4 tiles, crops from frames not shown whole
        sources = [t["source"] for t in entry["tiles"]]
        assert kinds.count("objects") == 4 and len(set(sources)) == 6


def test_mosaic_deterministic_and_seeded(tmp_path):
    generate_hituav_mosaics(str(tmp_path / "a"), replace(MOSAIC, num_images=1), source=SAMPLE_HITUAV)
    generate_hituav_mosaics(str(tmp_path / "b"), replace(MOSAIC, num_images=1), source=SAMPLE_HITUAV)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    generate_hituav_mosaics(str(tmp_path / "c"), replace(MOSAIC, num_images=1, seed=4), source=SAMPLE_HITUAV)
    assert _json(tmp_path / "a")["images"][0]["tiles"] != _json(tmp_path / "c")["images"][0]["tiles"]


def test_mosaic_skip_frames_uses_only_the_later_frames(tmp_path):
    names = sorted(os.listdir(os.path.join(SAMPLE_HITUAV, "val")))
    generate_hituav_mosaics(str(tmp_path / "m"), replace(MOSAIC, skip_frames=10), source=SAMPLE_HITUAV)
    used = {t["source"] for i in _json(tmp_path / "m")["images"] for t in i["tiles"]}
    assert used <= set(names[10:]) and len(used) >= 6


def test_mosaic_source_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no HIT-UAV val split"):
        generate_hituav_mosaics(str(tmp_path / "m"), MOSAIC, source=str(tmp_path / "nothing"))
    assert not (tmp_path / "m").exists()
    # frames of two sizes cannot share a grid
    src = tmp_path / "hit-uav"
    (src / "val").mkdir(parents=True)
    (src / "annotations").mkdir()
    cv2.imwrite(str(src / "val/a.jpg"), np.zeros((512, 640), np.uint8))
    cv2.imwrite(str(src / "val/b.jpg"), np.zeros((500, 640), np.uint8))
    raw = {"images": [{"id": 1, "filename": "a.jpg", "width": 640, "height": 512},
                      {"id": 2, "filename": "b.jpg", "width": 640, "height": 500}],
           "annotation": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [5, 5, 10, 10]}],
           "categories": [{"id": i, "name": n} for i, n in
                          enumerate(["Person", "Car", "Bicycle", "OtherVehicle", "DontCare"])]}
    (src / "annotations/val.json").write_text(json.dumps(raw))
    with pytest.raises(DataFormatError, match=r"b\.jpg: frame is 640x500, the first frame .*a\.jpg is 640x512"):
        generate_hituav_mosaics(str(tmp_path / "m"), MOSAIC, source=str(src))
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------- registration


def test_registrations_generate_once_and_verify(tmp_path, monkeypatch):
    monkeypatch.setenv("SOD2_DATASETS", str(tmp_path))  # no hit-uav there: the repository's sample
    monkeypatch.setattr(large_images, "DEFAULT_LARGE_SYNTHETIC", SMALL)
    monkeypatch.setattr(large_images, "DEFAULT_HITUAV_MOSAIC", replace(MOSAIC, num_images=1))
    for name, folder, like in (("sod2_large_synthetic_val", "sod2_large_synthetic", "sod2_synthetic_val"),
                               ("sod2_hituav_mosaic_val", "sod2_hituav_mosaic", "hituav_val")):
        meta, ref = MetadataCatalog.get(name), MetadataCatalog.get(like)
        for key in ("thing_classes", "evaluator_type", "eval_protocol"):
            assert meta.get(key) == ref.get(key), (name, key)
        dicts = DatasetCatalog.get(name)
        assert dicts and all(os.path.isfile(d["file_name"]) for d in dicts)
        assert any(a["category_id"] >= 0 for d in dicts for a in d["annotations"])
        ids = set(meta.thing_dataset_id_to_contiguous_id.values())
        assert {a["category_id"] for d in dicts for a in d["annotations"]} <= ids | {-1}
        png = tmp_path / folder / "val" / "00000.png"
        stamp = png.stat().st_mtime_ns
        assert DatasetCatalog.get(name) == dicts and png.stat().st_mtime_ns == stamp  # not regenerated
        png.write_bytes(png.read_bytes()[:1000])  # damaged: sod2's verification names it
        with pytest.raises(DataFormatError, match="damaged: delete .* generated again on next use"):
            DatasetCatalog.get(name)
    # another config: generated again
    monkeypatch.setattr(large_images, "DEFAULT_LARGE_SYNTHETIC", replace(SMALL, num_images=1))
    assert len(DatasetCatalog.get("sod2_large_synthetic_val")) == 1
    # the held-out part needs the full val split: the sample's 17 frames are all in part 1
    assert MetadataCatalog.get("sod2_hituav_mosaic_val_part2").thing_classes == ["Person", "Car", "Bicycle",
                                                                                "OtherVehicle"]
    with pytest.raises(DataFormatError, match="val.json: 17 frames, none left after skipping 200"):
        DatasetCatalog.get("sod2_hituav_mosaic_val_part2")
    assert not (tmp_path / "sod2_hituav_mosaic_part2").exists()


# -------------------------------------------------------------------------------- the tool


def _tool(argv, capsys):
    try:
        tool_module("make_large_image_set").main(argv)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tool_writes_a_loadable_set(tmp_path, capsys):
    code, out, err = _tool(["synthetic", str(tmp_path / "s"), "--num", "1", "--size", "700x500",
                            "--seed", "9"], capsys)
    assert code == 0, err
    assert out.startswith("1 images of 700x500, ") and "640 px" in out and "800 px" in out
    coco = _json(tmp_path / "s")
    assert coco["images"][0]["file_name"] == "val/00000.png"
    assert [c["name"] for c in coco["categories"]] == ["disc", "cross", "ring"]
    assert json.loads((tmp_path / "s/meta.json").read_text())["config"]["seed"] == 9
    code, out, err = _tool(["hituav-mosaic", str(tmp_path / "m"), "--num", "1", "--grid", "1x3",
                            "--empty-tiles", "1", "--source", SAMPLE_HITUAV], capsys)
    assert code == 0, err
    assert out.startswith("1 images of 1920x512, ")


@pytest.mark.parametrize("argv,message", [
    (["synthetic", "{d}", "--size", "4000"], "--size must be WIDTHxHEIGHT, e.g. 4000x3000, got '4000'"),
    (["synthetic", "{d}", "--size", "100x3000"], r"image size \(width, height\) must be at least 128"),
    (["synthetic", "{d}", "--grid", "2x2"], "--grid applies to hituav-mosaic, not to synthetic"),
    (["hituav-mosaic", "{d}", "--grid", "2x2", "--empty-tiles", "4"], r"empty tiles must be in \[0, 4\)"),
    (["hituav-mosaic", "{d}", "--source", "{t}/missing"], "no HIT-UAV val split"),
    (["hituav-mosaic", "{d}", "--skip-frames", "17", "--source", SAMPLE_HITUAV], "17 frames, none left after skipping 17"),
    (["synthetic", "{d}", "--skip-frames", "3"], "--skip-frames applies to hituav-mosaic, not to synthetic"),
    (["synthetic", "{t}/file/sub"], "DEST .*/file/sub: cannot write in .*/file$"),
    (["synthetic", "{t}/file"], "DEST .*/file is a file; give a folder"),
    (["synthetic", "{t}/full"], "DEST .*/full exists and is not empty; give --overwrite to replace it"),
])
def test_tool_errors_are_one_line(tmp_path, capsys, argv, message):
    import re
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep").write_text("x")
    argv = [a.format(d=tmp_path / "out", t=tmp_path) for a in argv]
    code, out, err = _tool(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(message, lines[0]), err
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "full" / "keep").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]  # nothing half-written
