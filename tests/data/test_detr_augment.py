"""RT-DETR's training augmentations (sod2/data/detr_augment.py) against independent checks:
colour formulas, torchvision's own IoU crop + sanitize, image content under the boxes, and
hand-computed crops; the mapper keeps ignore regions ignored; the recipe wires them."""
import colorsys

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from fvcore.transforms.transform import NoOpTransform
from PIL import Image

from sod2.config import get_config
from sod2.data import DETRDatasetMapper
from sod2.data.detr_augment import (IoUCropTransform, PhotometricDistortTransform, RandomIoUCrop,
                                    RandomPhotometricDistort, RandomZoomOut, SanitizeBoxes, SanitizeBoxesTransform,
                                    ZoomOutTransform, sample_iou_crop)

from ..modules import config_module


def _gray(x):
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _hue_shift(x, h):
    out = np.zeros_like(x)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            hh, s, v = colorsys.rgb_to_hsv(*(x[i, j] / 255.0))
            out[i, j] = np.array(colorsys.hsv_to_rgb((hh + h) % 1.0, s, v)) * 255.0
    return out


def _image(seed=0, h=12, w=12):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- photometric

def test_photometric_steps_match_the_colour_formulas():
    img = _image()
    x = img.astype(np.float64)
    g = _gray(x)[..., None]

    def run(**kw):
        return PhotometricDistortTransform(**kw).apply_image(img).astype(np.float64)

    # brightness: x * f; saturation: blend with the grey image; contrast: blend with its mean
    assert np.abs(run(brightness=1.1) - np.clip(x * 1.1, 0, 255)).max() <= 1.0
    assert np.abs(run(saturation=0.6) - np.clip(g + 0.6 * (x - g), 0, 255)).max() <= 1.5
    assert np.abs(run(contrast=1.3) - np.clip(g.mean() + 1.3 * (x - g.mean()), 0, 255)).max() <= 1.0
    # hue: an HSV rotation (PIL quantises H, S and V to 8 bits: a few levels on saturated pixels)
    for h in (0.05, -0.05, 0.3):
        err = np.abs(run(hue=h) - _hue_shift(x, h))
        assert err.max() <= 14 and err.mean() <= 2.0
        assert np.abs(run(hue=h) - _hue_shift(x, -h)).mean() > 5  # the direction matters
    # channel permutation: out[..., i] = in[..., perm[i]]
    assert np.array_equal(PhotometricDistortTransform(permutation=(2, 0, 1)).apply_image(img), img[..., [2, 0, 1]])
    # the order of contrast: before or after saturation
    after = np.clip(g + 0.5 * (x - g), 0, 255)
    ga = _gray(after)
    expect_after = np.clip(ga.mean() + 1.4 * (after - ga.mean()), 0, 255)
    assert np.abs(run(contrast=1.4, saturation=0.5, contrast_before=False) - expect_after).max() <= 2.0
    before = np.clip(g.mean() + 1.4 * (x - g.mean()), 0, 255)
    gb = _gray(before)[..., None]
    expect_before = np.clip(gb + 0.5 * (before - gb), 0, 255)
    assert np.abs(run(contrast=1.4, saturation=0.5, contrast_before=True) - expect_before).max() <= 2.0
    # coordinates never move
    pts = np.array([[1.0, 2.0], [3.5, 4.5]])
    assert np.array_equal(PhotometricDistortTransform(brightness=2.0).apply_coords(pts.copy()), pts)


def test_photometric_works_on_rgb_colours_whatever_the_channel_order():
    img = _image(1)
    kw = dict(brightness=1.05, contrast=0.8, saturation=1.4, hue=0.04, contrast_before=False, permutation=(1, 2, 0))
    rgb = PhotometricDistortTransform(image_format="RGB", **kw).apply_image(img)
    bgr = PhotometricDistortTransform(image_format="BGR", **kw).apply_image(np.ascontiguousarray(img[..., ::-1]))
    assert np.array_equal(bgr[..., ::-1], rgb)


def test_photometric_draws():
    aug = RandomPhotometricDistort(p=0.5)
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    np.random.seed(0)
    n, counts, before, vals = 3000, np.zeros(5), 0, {k: [] for k in ("brightness", "contrast", "saturation", "hue")}
    for _ in range(n):
        t = aug.get_transform(img)
        if isinstance(t, NoOpTransform):
            continue
        for i, k in enumerate(vals):
            v = getattr(t, k)
            if v is not None:
                counts[i] += 1
                vals[k].append(v)
        if t.permutation is not None:
            counts[4] += 1
            assert sorted(t.permutation) == [0, 1, 2]
        before += t.contrast_before
    assert np.all(np.abs(counts / n - 0.5) < 0.04)  # each step with probability p
    assert min(vals["brightness"]) >= 0.875 and max(vals["brightness"]) <= 1.125
    assert min(vals["contrast"]) >= 0.5 and max(vals["contrast"]) <= 1.5
    assert min(vals["saturation"]) >= 0.5 and max(vals["saturation"]) <= 1.5
    assert min(vals["hue"]) >= -0.05 and max(vals["hue"]) <= 0.05
    assert abs(before / (n * (1 - 0.5 ** 5)) - 0.5) < 0.05
    assert all(isinstance(RandomPhotometricDistort(p=0.0).get_transform(img), NoOpTransform) for _ in range(20))


# --------------------------------------------------------------------------- zoom out

def test_zoom_out_places_the_image_and_moves_boxes_with_it():
    h, w = 20, 30
    img = np.random.default_rng(0).integers(1, 256, (h, w, 3), dtype=np.uint8)  # no zero pixel
    box = np.array([[3.0, 4.0, 13.0, 9.5]])
    aug = RandomZoomOut(fill=0, side_range=(2.0, 2.0), p=1.0)
    np.random.seed(3)
    lefts = set()
    for _ in range(20):
        t = aug.get_transform(img)
        out = t.apply_image(img)
        assert out.shape == (2 * h, 2 * w, 3)
        # locate the image on the canvas from the pixels alone
        ys, xs = np.nonzero(out.any(axis=2))
        top, left = ys.min(), xs.min()
        assert (ys.max() - top + 1, xs.max() - left + 1) == (h, w)
        assert np.array_equal(out[top:top + h, left:left + w], img)
        assert np.allclose(t.apply_box(box), box + [left, top, left, top])
        assert 0 <= left <= w and 0 <= top <= h
        lefts.add(left)
    assert len(lefts) > 5  # the position is random
    # canvas = int(side * r) for one r in the range; per-channel fill
    aug = RandomZoomOut(fill=(1, 2, 3), side_range=(1.0, 4.0), p=1.0)
    for _ in range(20):
        t = aug.get_transform(img)
        out = t.apply_image(img)
        r = out.shape[1] / w
        assert 1.0 <= r <= 4.0 + 1e-9 and out.shape[0] in (int(h * r), int(h * r) - 1, int(h * r) + 1)
        mask = np.ones(out.shape[:2], dtype=bool)
        mask[t.y0:t.y0 + h, t.x0:t.x0 + w] = False
        assert np.array_equal(out[mask], np.tile([1, 2, 3], (mask.sum(), 1)))
    assert all(isinstance(RandomZoomOut(p=0.0).get_transform(img), NoOpTransform) for _ in range(20))
    with pytest.raises(ValueError, match="side_range"):
        RandomZoomOut(side_range=(0.5, 2.0))


def test_zoom_out_probability():
    np.random.seed(0)
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    hits = sum(isinstance(RandomZoomOut(p=0.5).get_transform(img), ZoomOutTransform) for _ in range(2000))
    assert abs(hits / 2000 - 0.5) < 0.04


# --------------------------------------------------------------------------- IoU crop

def _tv_crop_and_sanitize(boxes, size_hw, params):
    """torchvision's RandomIoUCrop.transform + SanitizeBoundingBoxes(min_size=1): kept indices, boxes."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    bb = tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=size_hw)
    out = v2.RandomIoUCrop().transform(bb, params)
    res = v2.SanitizeBoundingBoxes(min_size=1)({"boxes": out, "labels": torch.arange(len(boxes))})
    return res["labels"].numpy(), res["boxes"].numpy()


def _ours(boxes, size_hw, left, top, cw, ch):
    b = IoUCropTransform(left, top, cw, ch, orig_w=size_hw[1], orig_h=size_hw[0]).apply_box(boxes)
    b = SanitizeBoxesTransform(1.0, cw, ch).apply_box(b)
    keep = np.nonzero(((b[:, 2:] - b[:, :2]) >= 1).all(axis=1))[0]
    return keep, b[keep]


def test_iou_crop_box_rules_match_torchvision():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    rng = np.random.default_rng(0)
    H, W = 120, 160
    checked = 0
    for seed in range(60):
        xy = rng.uniform(-10, [W, H], size=(12, 2))
        wh = rng.uniform(0.5, 50, size=(12, 2))
        boxes = np.clip(np.concatenate([xy, xy + wh], 1), 0, [W, H, W, H])
        torch.manual_seed(seed)
        params = v2.RandomIoUCrop().make_params(
            [tv_tensors.Image(torch.zeros(3, H, W)),
             tv_tensors.BoundingBoxes(torch.as_tensor(boxes, dtype=torch.float32), format="XYXY", canvas_size=(H, W))])
        if not params:
            continue
        checked += 1
        tv_keep, tv_boxes = _tv_crop_and_sanitize(boxes, (H, W), params)
        keep, ours = _ours(boxes, (H, W), params["left"], params["top"], params["width"], params["height"])
        assert keep.tolist() == tv_keep.tolist()
        assert np.allclose(ours, tv_boxes, atol=1e-4)
    assert checked >= 20


def test_iou_crop_by_hand():
    # crop x 10..30, y 10..30 of a 40x40 image
    t = IoUCropTransform(10, 10, 20, 20, orig_w=40, orig_h=40)
    boxes = np.array([
        [0.0, 12.0, 20.0, 16.0],   # centre x = 10: on the edge, not strictly inside -> emptied
        [1.0, 12.0, 20.0, 16.0],   # centre 10.5: kept, clamped to x 0..10 in the crop
        [25.0, 25.0, 45.0, 45.0],  # beyond the image: clamped to 40 first, centre (32.5) outside
        [22.0, 20.0, 38.0, 28.0],  # centre (30, 24): on the right edge -> emptied
        [21.0, 20.0, 37.0, 28.0],  # centre 29: kept, clamped to 20
    ])
    out = t.apply_box(boxes)
    assert out.tolist() == [[0, 0, 0, 0], [0, 2, 10, 6], [0, 0, 0, 0], [0, 0, 0, 0], [11, 10, 20, 18]]
    assert t.as_plain().apply_box(boxes[:1]).tolist() == [[-10, 2, 10, 6]]  # ignore regions: a plain crop
    # a plain crop's coordinates (polygons, area scale)
    assert t.apply_coords(np.array([[15.0, 12.0]])).tolist() == [[5.0, 2.0]]


def test_iou_crop_sampler():
    W, H = 100, 80
    boxes = np.array([[10, 10, 60, 50], [70, 20, 90, 30], [5, 60, 25, 78]], dtype=np.float64)
    np.random.seed(0)
    n_crops = 0
    for _ in range(300):
        crop = sample_iou_crop(W, H, boxes, sampler_options=(0.5,))
        assert crop is not None  # a big box makes 0.5 reachable
        left, top, cw, ch = crop
        assert int(0.3 * W) <= cw <= W and int(0.3 * H) <= ch <= H and 0.5 <= cw / ch <= 2.0
        assert 0 <= left and left + cw <= W and 0 <= top and top + ch <= H
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (left < cx) & (cx < left + cw) & (top < cy) & (cy < top + ch)
        assert inside.any()
        # IoU of a centre-inside box with the crop reaches 0.5 (independent loop)
        best = 0.0
        for b in boxes[inside]:
            iw = max(0.0, min(b[2], left + cw) - max(b[0], left))
            ih = max(0.0, min(b[3], top + ch) - max(b[1], top))
            inter = iw * ih
            best = max(best, inter / ((b[2] - b[0]) * (b[3] - b[1]) + cw * ch - inter))
        assert best >= 0.5
        n_crops += 1
    assert n_crops == 300
    assert sample_iou_crop(W, H, boxes, sampler_options=(1.0,)) is None  # "leave as is"
    assert sample_iou_crop(W, H, np.zeros((0, 4))) is None  # nothing to crop around
    tiny = np.array([[10, 10, 11, 11]], dtype=np.float64)  # IoU 0.99 impossible: gives up, no crop
    assert sample_iou_crop(W, H, tiny, sampler_options=(0.99,), trials=5, max_option_draws=3) is None


def test_random_iou_crop_probability_and_no_boxes():
    img = np.zeros((80, 100, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 60, 50]], dtype=np.float64)
    np.random.seed(1)
    aug = RandomIoUCrop(p=0.8, sampler_options=(0.0,))  # option 0 always finds a crop here
    hits = sum(isinstance(aug.get_transform(img, boxes), IoUCropTransform) for _ in range(1000))
    assert abs(hits / 1000 - 0.8) < 0.04
    assert all(isinstance(aug.get_transform(img, np.zeros((0, 4))), NoOpTransform) for _ in range(20))
    assert all(isinstance(RandomIoUCrop(p=0.0).get_transform(img, boxes), NoOpTransform) for _ in range(20))
    with pytest.raises(ValueError, match="DETRDatasetMapper"):  # a mapper that gives no boxes
        T.AugmentationList([RandomIoUCrop()])(T.AugInput(img))


def test_sanitize_by_hand():
    t = SanitizeBoxes(min_size=1.0).get_transform(np.zeros((20, 20, 3), dtype=np.uint8))
    boxes = np.array([[-5.0, 2.0, 0.5, 10.0],   # clamped to width 0.5 -> emptied
                      [3.0, 3.0, 4.0, 4.5],     # 1 x 1.5: kept
                      [18.0, 5.0, 25.0, 9.0],   # clamped to 18..20: kept
                      [5.0, 5.0, 9.0, 5.9]])    # height 0.9 -> emptied
    assert t.apply_box(boxes).tolist() == [[0, 0, 0, 0], [3, 3, 4, 4.5], [18, 5, 20, 9], [0, 0, 0, 0]]
    assert t.as_plain().apply_box(boxes).tolist() == boxes.tolist()


# --------------------------------------------------------------------------- mapper

BG = (100, 100, 100)
# (x0, y0, x1, y1, class, colour): objects apart from each other and from the ignore region
OBJECTS = [(10, 10, 40, 30, 0, (250, 20, 20)), (60, 15, 100, 45, 1, (20, 250, 20)),
           (120, 20, 150, 70, 2, (20, 20, 250)), (20, 90, 70, 120, 3, (250, 250, 20)),
           (100, 100, 130, 150, 4, (20, 250, 250)), (160, 110, 190, 140, 5, (250, 20, 250))]
REGION = (150, 5, 195, 60, (250, 140, 20))


def _dataset_dict(tmp_path, h=160, w=200):
    img = np.full((h, w, 3), BG, dtype=np.uint8)
    annos = []
    for x0, y0, x1, y1, k, c in OBJECTS:
        img[y0:y1, x0:x1] = c
        annos.append({"bbox": [x0, y0, x1 - x0, y1 - y0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": k})
    x0, y0, x1, y1, c = REGION
    img[y0:y1, x0:x1] = c
    annos.append({"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": -1, "ignore": 1})
    path = tmp_path / "scene.png"
    Image.fromarray(img).save(path)
    return {"file_name": str(path), "height": h, "width": w, "image_id": 0, "annotations": annos}


def _colour_extent(img, colour, tol=40):
    """Bounding box (x0, y0, x1, y1) of the pixels close to ``colour`` (None if none)."""
    close = (np.abs(img.astype(np.int32) - np.array(colour)).max(axis=2) <= tol)
    ys, xs = np.nonzero(close)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def test_mapper_boxes_and_ignore_regions_follow_the_image(tmp_path):
    """The whole random pipeline (zoom-out, IoU crop, flip, resize to another aspect): every
    object box and every ignore region box frames its own colour in the output image."""
    d = _dataset_dict(tmp_path)
    mapper = DETRDatasetMapper(True, augmentations=[
        RandomPhotometricDistort(p=0.0), RandomZoomOut(side_range=(1.0, 2.0), p=0.7), RandomIoUCrop(p=1.0),
        SanitizeBoxes(1.0), T.RandomFlip(horizontal=True), T.Resize((96, 128))], image_format="RGB")
    np.random.seed(0)
    n_boxes = n_regions = n_orig = 0
    for _ in range(30):
        out = mapper(d)
        img = out["image"].permute(1, 2, 0).numpy()
        assert img.shape == (96, 128, 3)
        inst = out["instances"]
        for box, k, orig in zip(inst.gt_boxes.tensor.numpy(), inst.gt_classes.tolist(), inst.gt_orig_areas.tolist()):
            x0, y0, x1, y1, _, colour = OBJECTS[k]
            assert (box[2:] - box[:2] >= 1).all()
            if (box[2:] - box[:2] >= 3).all():  # slivers blend with their surroundings
                extent = _colour_extent(img, colour)
                assert extent is not None and np.abs(extent - box).max() <= 1.5, (k, box, extent)
            if box[0] > 1 and box[1] > 1 and box[2] < 127 and box[3] < 95:  # not clipped: the whole object
                assert orig == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-4)
                n_orig += 1
            n_boxes += 1
        ign = out["ignore_instances"]
        assert ign.gt_classes.tolist() in ([], [-1])
        for box in ign.gt_boxes.tensor.numpy():
            if (box[2:] - box[:2] >= 3).all():
                extent = _colour_extent(img, REGION[4])
                assert extent is not None and np.abs(extent - box).max() <= 1.5, (box, extent)
            n_regions += 1
        # an ignore region that is visible is never lost
        if _colour_extent(img, REGION[4], tol=10) is not None:
            assert len(ign) == 1
    assert n_boxes > 60 and n_regions > 10 and n_orig > 10


def test_mapper_crop_drops_objects_keeps_ignore_regions_by_hand(tmp_path):
    """A fixed crop x 50..150 of a 200x160 image, the intermediate sanitize, a resize by 1/2:
    objects whose centre left the crop are dropped, ignore regions keep their visible part,
    and boxes under 1 px are removed before (in the crop) and after (resized) the resize."""
    img = np.zeros((160, 200, 3), dtype=np.uint8)
    path = tmp_path / "black.png"
    Image.fromarray(img).save(path)

    def obj(x0, y0, x1, y1, k, **extra):
        return {"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": k, **extra}

    annos = [obj(60, 10, 80, 30, 0),         # inside
             obj(30, 40, 60, 60, 1),         # centre x 45 < 50: dropped
             obj(45, 70, 75, 90, 2),         # centre 60: kept, clipped to 50
             obj(60, 100, 61.5, 120, 3),     # 1.5 px wide: kept by the crop's sanitize, 0.75 after the resize
             obj(90, 100, 90.8, 120, 4),     # 0.8 px wide: removed by the crop's sanitize
             obj(20, 120, 70, 150, -1, ignore=1),   # centre 45: an ignore region stays (clipped)
             obj(0, 0, 20, 20, -1, ignore=1),       # outside the crop: dropped (no area left)
             obj(100, 30, 120, 50, 1, iscrowd=1)]   # a crowd box is ignored, not an object
    d = {"file_name": str(path), "height": 160, "width": 200, "annotations": annos}
    mapper = DETRDatasetMapper(True, augmentations=[IoUCropTransform(50, 0, 100, 160, orig_w=200, orig_h=160),
                                                    SanitizeBoxes(1.0), T.Resize((80, 50))])
    out = mapper(d)
    assert out["image"].shape == (3, 80, 50)
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [0, 2]
    assert inst.gt_boxes.tensor.tolist() == [[5.0, 5.0, 15.0, 15.0], [0.0, 35.0, 12.5, 45.0]]
    # original-image areas: the visible part divided by the area scale 1/4
    assert inst.gt_orig_areas.tolist() == pytest.approx([400.0, 25 * 20])
    ign = out["ignore_instances"]
    assert ign.gt_classes.tolist() == [-1, 1]
    assert ign.gt_boxes.tensor.tolist() == [[0.0, 60.0, 10.0, 75.0], [25.0, 15.0, 35.0, 25.0]]
    # min_size=0 keeps the 0.75 px box (only the final sanitize changes)
    mapper0 = DETRDatasetMapper(True, augmentations=mapper.augmentations.augs, min_size=0.0)
    assert mapper0(d)["instances"].gt_classes.tolist() == [0, 2, 3]


def test_mapper_without_objects_and_in_inference(tmp_path):
    d = _dataset_dict(tmp_path)
    mapper = DETRDatasetMapper(True, augmentations=[RandomZoomOut(p=1.0), RandomIoUCrop(p=1.0), SanitizeBoxes(),
                                                    T.Resize((64, 64))])
    only_region = dict(d, annotations=[a for a in d["annotations"] if a.get("ignore")])
    np.random.seed(0)
    out = mapper(only_region)
    assert len(out["instances"]) == 0 and out["image"].shape == (3, 64, 64)
    no_annos = {k: v for k, v in d.items() if k != "annotations"}
    assert "instances" not in mapper(no_annos)
    test_mapper = DETRDatasetMapper(False, augmentations=[T.Resize((64, 64))])
    out = test_mapper(d)
    assert out["image"].shape == (3, 64, 64) and "instances" not in out


# --------------------------------------------------------------------------- recipe (data side)

def _recipe_module():
    return config_module("common/recipes/rtdetr.py")


def test_recipe_sets_the_reference_pipeline():
    from detectron2.config import instantiate
    from omegaconf import OmegaConf

    recipe = _recipe_module()
    cfg = OmegaConf.create({"dataloader": get_config("common/data/synthetic.py").dataloader,
                            "train": get_config("common/train.py").train})
    recipe.train_mapper.ignore_fill = cfg.dataloader.train.mapper.ignore_fill  # as the configs do
    cfg.dataloader.train.mapper = recipe.train_mapper
    cfg.dataloader.test.mapper.augmentations = [recipe.test_resize]
    cfg.dataloader.test.mapper.image_format = "RGB"
    cfg.train.multiscale = recipe.multiscale
    mapper = instantiate(cfg.dataloader.train.mapper)
    assert isinstance(mapper, DETRDatasetMapper) and mapper.image_format == "RGB" and mapper.min_size == 1.0
    assert mapper.ignore_fill == "mean"  # the data config's painting of ignore regions is kept
    augs = mapper.augmentations.augs
    assert [type(a).__name__ for a in augs] == ["RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop",
                                                "SanitizeBoxes", "RandomFlip", "Resize"]
    assert (augs[0].p, augs[1].p, augs[1].fill, tuple(augs[1].side_range), augs[2].p) == (0.5, 0.5, 0, (1.0, 4.0), 0.8)
    assert augs[2].sampler_options == (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0) and augs[2].trials == 40
    assert augs[4].horizontal and augs[4].prob == 0.5 and tuple(augs[5].shape) == (640, 640)
    test = instantiate(cfg.dataloader.test.mapper)
    assert test.image_format == "RGB"
    assert [(type(a).__name__, tuple(a.shape)) for a in test.augmentations.augs] == [("Resize", (640, 640))]
    assert cfg.dataloader.train.dataset.names == "sod2_synthetic_train"
    # one input size: the training and test resizes follow train.multiscale.input_size
    cfg.train.multiscale.input_size = [320, 320]
    assert tuple(instantiate(cfg.dataloader.train.mapper).augmentations.augs[5].shape) == (320, 320)
    assert [tuple(a.shape) for a in instantiate(cfg.dataloader.test.mapper).augmentations.augs] == [(320, 320)]