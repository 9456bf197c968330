"""MosaicDataset (Mosaic, random affine, MixUp, HSV, flip, letterbox): the pieces by hand,
boxes and ignore regions consistent with the pixels, original areas, the shared switch."""
import math

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import build_detection_train_loader

from sod2.data.datasets.common import IGNORE_REGION, make_annotation
from sod2.data.mosaic import (MosaicDataset, StrongAugmentationSwitch, _Labels, affine_boxes, affine_matrix,
                              augment_hsv, letterbox, mosaic_placement, random_hsv_gains)

BG = (30, 30, 30)
SIZES = [(48, 64), (64, 48), (40, 56), (64, 64), (56, 40), (48, 48)]  # (h, w) of the source images


def _colours(n, seed=0):
    """n BGR colours, far apart, far from grey (backgrounds, 114 and 0 paddings are grey)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        c = rng.integers(40, 250, 3)
        if np.ptp(c) >= 60 and all(np.abs(c - o).max() >= 25 for o in out):
            out.append(c)
    return [tuple(int(v) for v in c) for c in out]


def _dataset(tmp_path, obj=8):
    """Images with 3 objects (obj x obj, classes 0-2), one class-agnostic ignore region
    (10x10) and one ignored box of class 1 (8x8), each painted a unique colour.

    Returns (dataset dicts, {colour: ("object" | "ignore", class)})."""
    colours = iter(_colours(5 * len(SIZES)))
    dicts, kinds = [], {}
    for i, (h, w) in enumerate(SIZES):
        img = np.full((h, w, 3), BG, np.uint8)
        annos = []
        spots = [(4, 4), (22, 4), (4, 22), (22, 22), (4 + 18 * ((w - 16) // 18 > 1), 30)]
        for k, (x, y) in enumerate(spots[:5]):
            c = next(colours)
            if k < 3:
                size, cls, ign = obj, k, False
            elif k == 3:
                size, cls, ign = 10, IGNORE_REGION, True
            else:
                x, y = w - 12, h - 12
                size, cls, ign = 8, 1, True
            img[y:y + size, x:x + size] = c
            annos.append(make_annotation([x, y, size, size], cls, ignore=ign))
            kinds[c] = ("ignore" if ign else "object", cls)
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), img)
        dicts.append({"file_name": str(path), "image_id": i, "height": h, "width": w, "annotations": annos})
    return dicts, kinds


def _components(img, colour):
    """(x, y, w, h) of the 8-connected components of the pixels exactly ``colour``."""
    mask = np.all(img == np.array(colour, np.uint8), axis=2).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [tuple(int(v) for v in stats[i, :4]) for i in range(1, n)]


def _encloses(box, comp, tol):
    """The pixel centres of ``comp`` lie in ``box`` (XYXY) up to ``tol`` pixels."""
    x, y, w, h = comp
    return (box[0] - tol <= x + 0.5 and x + w - 0.5 <= box[2] + tol and
            box[1] - tol <= y + 0.5 and y + h - 0.5 <= box[3] + tol)


def _check_colours_enclosed(out, kinds, tol=1.5, tight=None):
    """Every exactly-coloured blob lies in a box of its kind and class; ``tight``: and that
    box's edges are within ``tight`` px of the blob's (only for unclipped blobs)."""
    img = out["image"].numpy().transpose(1, 2, 0)
    sets = {"object": (out["instances"].gt_boxes.tensor.numpy(), out["instances"].gt_classes.numpy()),
            "ignore": (out["ignore_instances"].gt_boxes.tensor.numpy(), out["ignore_instances"].gt_classes.numpy())}
    seen = 0
    for colour, (kind, cls) in kinds.items():
        boxes, classes = sets[kind]
        for comp in _components(img, colour):
            if comp[2] * comp[3] < 2:
                continue
            seen += 1
            cands = [b for b, c in zip(boxes, classes) if c == cls and _encloses(b, comp, tol)]
            assert cands, (kind, cls, comp, boxes[classes == cls])
            if tight is not None:
                x, y, w, h = comp
                assert any(np.abs(b - [x, y, x + w, y + h]).max() <= tight for b in cands), (comp, cands)
    return seen


# --------------------------------------------------------------------------- pieces by hand

def test_mosaic_placement_by_hand():
    H = W = 100
    # centre (120, 80), image 60 x 100: nothing cut except at the canvas border
    assert mosaic_placement(0, 120, 80, 100, 60, H, W) == ((20, 20, 120, 80), (0, 0, 100, 60))
    assert mosaic_placement(1, 120, 80, 100, 60, H, W) == ((120, 20, 200, 80), (0, 0, 80, 60))
    assert mosaic_placement(2, 120, 80, 100, 60, H, W) == ((20, 80, 120, 140), (0, 0, 100, 60))
    assert mosaic_placement(3, 120, 80, 100, 60, H, W) == ((120, 80, 200, 140), (0, 0, 80, 60))
    # centre (50, 30): the top-left image loses its left 50 and top 30 pixels
    assert mosaic_placement(0, 50, 30, 100, 60, H, W) == ((0, 0, 50, 30), (50, 30, 100, 60))
    assert mosaic_placement(2, 50, 190, 100, 60, H, W) == ((0, 190, 50, 200), (50, 0, 100, 10))


def test_affine_matrix_and_corners_by_hand():
    # 90 degrees, scale 1: x' = y + 10, y' = -x + 5
    M = affine_matrix(90, 1.0, 0, 0, 10, 5)
    assert M == pytest.approx(np.array([[0, 1, 10], [-1, 0, 5]]), abs=1e-12)
    # box (2, 3, 6, 8): corners (13, 3), (18, -1), (18, 3), (13, -1) -> hull (13, -1, 18, 3) -> clip
    assert affine_boxes(np.array([[2.0, 3, 6, 8]]), M, (40, 40))[0].tolist() == pytest.approx([13, 0, 18, 3])
    assert affine_boxes(np.array([[2.0, 3, 6, 8]]), M, (40, 15))[0].tolist() == pytest.approx([13, 0, 15, 3])  # W = 15
    # scale 2, shear_y 45 deg (tan = 1): M = [[2, 2, 0], [0, 2, 0]]
    M = affine_matrix(0, 2.0, 0, 45, 0, 0)
    assert M == pytest.approx(np.array([[2, 2, 0], [0, 2, 0]]), abs=1e-12)
    # (1,1)->(4,2) (3,2)->(10,4) (1,2)->(6,4) (3,1)->(8,2)
    assert affine_boxes(np.array([[1.0, 1, 3, 2]]), M, (50, 50))[0].tolist() == pytest.approx([4, 2, 10, 4])
    # shear_x 45 deg: M = [[1, 0, 0], [1, 1, 0]]
    assert affine_matrix(0, 1.0, 45, 0, 0, 0) == pytest.approx(np.array([[1, 0, 0], [1, 1, 0]]), abs=1e-12)
    # rotation + scale: OpenCV's matrix about the origin
    R = cv2.getRotationMatrix2D((0, 0), 7.0, 1.3)
    assert affine_matrix(7.0, 1.3, 0, 0, 0, 0) == pytest.approx(R, abs=1e-12)
    # its area scale: |det| = scale^2 (rotation) and (1 + tx ty)... shear only: 1 - tan(a) tan(b)
    M = affine_matrix(0, 1.0, 30, 20, 0, 0)
    assert abs(np.linalg.det(M[:, :2])) == pytest.approx(1 - math.tan(math.radians(30)) * math.tan(math.radians(20)))


def test_hsv_by_hand():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 2] = 255  # BGR pure red: H 0, S 255, V 255
    grey = np.full((2, 2, 3), 100, np.uint8)
    # V - 30: (0, 0, 225)
    assert augment_hsv(red, (0, 0, -30))[0, 0].tolist() == [0, 0, 225]
    # S - 30: min channel = V (1 - S/255) = 255 * 30 / 255 = 30
    assert augment_hsv(red, (0, -30, 0))[0, 0].tolist() == [30, 30, 255]
    # H + 5 (10 degrees): G = 255 * 10 / 60 = 42.5
    b, g, r = augment_hsv(red, (5, 0, 0))[0, 0].tolist()
    assert (b, r) == (0, 255) and abs(g - 42.5) <= 1
    # H - 5 wraps to 175 (350 degrees): B = 42.5, G = 0
    b, g, r = augment_hsv(red, (-5, 0, 0))[0, 0].tolist()
    assert (g, r) == (0, 255) and abs(b - 42.5) <= 1
    # V saturates at 255, grey has no hue to turn, RGB order gives the same colours reversed
    assert augment_hsv(red, (0, 0, 30))[0, 0].tolist() == [0, 0, 255]
    assert augment_hsv(grey, (60, 0, 0))[0, 0].tolist() == [100, 100, 100]
    assert augment_hsv(red[..., ::-1], (0, -30, 0), "RGB")[0, 0].tolist() == [255, 30, 30]


def test_random_hsv_gains():
    rng = np.random.RandomState(0)
    g = np.stack([random_hsv_gains((5, 30, 30), rng) for _ in range(4000)])
    assert g.dtype == np.int16
    assert np.abs(g).max(0).tolist() == [4, 29, 29]  # U(-1,1) * gain truncated towards 0
    assert np.abs(g).max(0).tolist() <= [5, 30, 30]
    zero = (g == 0).mean(0)
    # channel off with p 0.5; on, a zero comes from |u * gain| < 1: p 1/5 (H), 1/30 (S, V)
    assert zero == pytest.approx([0.5 + 0.5 / 5, 0.5 + 0.5 / 30, 0.5 + 0.5 / 30], abs=0.03)


def test_letterbox_by_hand():
    img = np.full((50, 100, 3), 7, np.uint8)
    out, r = letterbox(img, (64, 64))
    assert r == pytest.approx(0.64) and out.shape == (64, 64, 3)
    assert (out[:32] == 7).all() and (out[32:] == 114).all()
    out, r = letterbox(np.full((10, 20, 3), 7, np.uint8), (40, 30), fill=0)
    assert r == 1.5 and (out[:15, :30] == 7).all() and (out[15:] == 0).all()


# --------------------------------------------------------------------------- the dataset

def test_mosaic_affine_keeps_boxes_and_ignores_on_their_pixels(tmp_path):
    dicts, kinds = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (64, 64), enable_mixup=False, hsv_prob=0.0, mosaic_scale=(0.8, 1.5))
    np.random.seed(0)
    seen = 0
    for i in range(24):
        out = ds[i % len(ds)]
        assert out["mosaic"] and out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.uint8
        assert (out["height"], out["width"]) == (64, 64) and out["image_id"] == i % len(ds)
        inst, ign = out["instances"], out["ignore_instances"]
        assert inst.gt_classes.min() >= 0 if len(inst) else True  # ignored boxes never objects
        assert len(inst.gt_orig_areas) == len(inst)
        seen += _check_colours_enclosed(out, kinds)
    assert seen > 50


def test_no_rotation_boxes_tight_and_orig_areas(tmp_path):
    """Without rotation and shear every step scales uniformly: an unclipped 8x8 object stays
    square and its original area (64) comes back; clipped ones have less."""
    dicts, kinds = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (64, 64), degrees=0.0, shear=0.0, mosaic_scale=(0.5, 1.5),
                       hsv_prob=0.0, mixup_scale=(0.5, 1.5))
    np.random.seed(1)
    squares = 0
    for i in range(30):
        out = ds[i % len(ds)]
        b = out["instances"].gt_boxes.tensor.numpy()
        wh = b[:, 2:] - b[:, :2]
        orig = out["instances"].gt_orig_areas.numpy()
        sq = np.abs(wh[:, 0] - wh[:, 1]) < 1e-3
        squares += int(sq.sum())
        assert orig[sq] == pytest.approx(np.full(sq.sum(), 64.0), rel=1e-4)
        assert (orig[~sq] < 64.0 + 1e-3).all()
        # boxes hug their pixels (MixUp'ed images have blended colours: mostly skipped)
        _check_colours_enclosed(out, kinds, tight=2.5)
    assert squares > 50


def test_mixup_geometry_on_black(tmp_path):
    """MixUp on a black image: the result is half the second image; its objects and
    ignore regions (halved colours) lie in their boxes, the first image's labels stay."""
    dicts, kinds = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (64, 64))
    half = {tuple(v // 2 for v in c): k for c, k in kinds.items()}
    first = _Labels([[1, 2, 5, 9]], [2], [[0, 0, 3, 3]], [IGNORE_REGION])
    np.random.seed(3)
    for j, (jit, flip) in enumerate([(1.0, False), (0.6, True), (1.4, False), (1.5, True)]):
        _, img2, lab2 = ds._load(j)
        img, lab = ds.mixup(np.zeros((64, 64, 3), np.uint8), first, img2, lab2, jit, flip)
        assert img.shape == (64, 64, 3)
        assert lab.boxes[0].tolist() == [1, 2, 5, 9] and lab.classes.tolist()[0] == 2
        assert lab.ign_classes.tolist()[0] == IGNORE_REGION and len(lab.ign_boxes) == 1 + len(lab2.ign_boxes)
        assert len(lab.boxes) == 1 + len(lab2.boxes)
        r = min(64 / img2.shape[0], 64 / img2.shape[1]) * jit
        assert lab.scales.tolist() == pytest.approx([1.0] + [r * r] * len(lab2.boxes))
        if jit <= 1:  # no crop: the letterboxed image scaled by jit sits at the top-left
            x = lab2.boxes * r
            if flip:
                ow = int(64 * jit)
                x = np.stack([ow - x[:, 2], x[:, 1], ow - x[:, 0], x[:, 3]], 1)
            assert lab.boxes[1:] == pytest.approx(x)
        out = {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()),
               "instances": _inst(lab.boxes, lab.classes), "ignore_instances": _inst(lab.ign_boxes, lab.ign_classes)}
        # two resizes (letterbox, jit) each blur up to a source pixel at the edges
        assert _check_colours_enclosed(out, half, tight=3.5) > 0


def _inst(boxes, classes):
    from detectron2.structures import Boxes, Instances

    i = Instances((64, 64))
    i.gt_boxes = Boxes(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    i.gt_classes = torch.as_tensor(classes)
    return i


def test_full_pipeline_with_mixup_and_hsv_is_consistent(tmp_path):
    """All pieces on with the reference numbers: valid boxes in the image, ignore classes
    only in ignore_instances, max_labels and min_box_size respected, ~half MixUp'ed."""
    dicts, kinds = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (64, 64), max_labels=5)
    np.random.seed(2)
    n_ign = 0
    for i in range(20):
        out = ds[i % len(ds)]
        b = out["instances"].gt_boxes.tensor
        assert len(b) <= 5
        if len(b):
            assert (b[:, 2:] - b[:, :2]).min() > 1.0
            assert b.min() >= 0 and b[:, 0::2].max() <= 64 and b[:, 1::2].max() <= 64
            assert set(out["instances"].gt_classes.tolist()) <= {0, 1, 2}
        g = out["ignore_instances"].gt_boxes.tensor
        if len(g):
            assert ((g[:, 2:] - g[:, :2]) > 0).all()
        n_ign += len(g)
        assert set(out["ignore_instances"].gt_classes.tolist()) <= {IGNORE_REGION, 1}
    assert n_ign > 0


def test_no_mosaic_path(tmp_path):
    """Strong augmentation off: the image alone, letterboxed (and flipped) with its labels."""
    dicts, kinds = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (96, 96), hsv_prob=0.0, flip_prob=0.0, enabled=False)
    out = ds[1]  # 64 x 48 -> r = 1.5 -> 96 x 72, padded right
    assert not out["mosaic"] and out["image"].shape == (3, 96, 96)
    assert (out["image"][:, :, 72:] == 114).all()
    src = [a for a in dicts[1]["annotations"] if not a["ignore"]]
    exp = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                    for a in src]) * 1.5
    assert out["instances"].gt_boxes.tensor.numpy() == pytest.approx(exp)
    assert out["instances"].gt_orig_areas.tolist() == pytest.approx([64.0] * 3)
    assert out["ignore_instances"].gt_classes.tolist() == [IGNORE_REGION, 1]
    _check_colours_enclosed(out, kinds, tight=2.0)
    flipped = MosaicDataset(dicts, (96, 96), hsv_prob=0.0, flip_prob=1.0, enabled=False)[1]
    fb = flipped["instances"].gt_boxes.tensor.numpy()
    assert fb == pytest.approx(np.stack([72 - exp[:, 2], exp[:, 1], 72 - exp[:, 0], exp[:, 3]], 1))
    _check_colours_enclosed(flipped, kinds, tight=2.0)


@pytest.mark.parametrize("workers", [0, 1])
def test_switch_reaches_loader_workers(tmp_path, workers):
    dicts, _ = _dataset(tmp_path)
    ds = MosaicDataset(dicts, (64, 64), hsv_prob=0.0)
    loader = build_detection_train_loader(ds, mapper=None, total_batch_size=2, num_workers=workers)
    assert isinstance(ds, StrongAugmentationSwitch)  # what the no-aug tail is handed
    it = iter(loader)
    assert all(d["mosaic"] for _ in range(3) for d in next(it))
    ds.set_strong_augmentation(False)  # in this process, after the workers started
    flags = [d["mosaic"] for _ in range(8) for d in next(it)]
    # batches prepared before the switch (prefetched by the worker) may still come
    assert not any(flags[8:]), flags
    if workers == 0:
        assert not any(flags)
    ds.set_strong_augmentation(True)
    assert ds.enabled
