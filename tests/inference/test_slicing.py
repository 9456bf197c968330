"""Slice geometry: sod2's windows against SAHI's get_slice_bboxes and hand values."""
import numpy as np
import pytest

from sod2.data.split import patch_origins
from sod2.inference import slice_strides, slice_windows
from sod2.inference.slicing import draw_slice_windows

sahi_slicing = pytest.importorskip("sahi.slicing")

CASES = [  # (H, W, slice h, slice w, overlap h, overlap w)
    (3000, 4000, 800, 800, 0.2, 0.2),
    (1080, 1920, 800, 800, 0.1875, 0.1875),  # SODA-D: stride 650
    (800, 800, 800, 800, 0.2, 0.2),  # exactly one slice
    (801, 1601, 800, 800, 0.2, 0.2),  # one pixel over: the last slice snaps to the edge
    (300, 500, 800, 800, 0.2, 0.2),  # smaller than a slice
    (300, 2000, 512, 512, 0.25, 0.25),  # thin strip
    (2000, 300, 512, 640, 0.0, 0.5),  # non-square slices, different overlaps
    (1234, 987, 256, 320, 0.3, 0.1),
    (640, 640, 320, 320, 0.0, 0.0),  # no overlap, exact tiling
    (641, 641, 320, 320, 0.0, 0.0),
    (7680, 4320, 1024, 1024, 0.2, 0.2),  # 8K
]


@pytest.mark.parametrize("H,W,sh,sw,oh,ow", CASES)
def test_windows_are_sahis(H, W, sh, sw, oh, ow):
    ours = slice_windows(H, W, (sh, sw), overlap=(oh, ow))
    ref = sahi_slicing.get_slice_bboxes(image_height=H, image_width=W, slice_height=sh, slice_width=sw,
                                        auto_slice_resolution=False, overlap_height_ratio=oh,
                                        overlap_width_ratio=ow)
    assert ours.tolist() == [list(map(int, r)) for r in ref]


def test_hand_values_and_coverage():
    # 1920 wide, 800 px, stride 650 (SODA-D): 0, 650, 1120 (the last snapped to 1920 - 800)
    w = slice_windows(1080, 1920, 800, stride=650)
    assert sorted({int(x) for x in w[:, 0]}) == [0, 650, 1120] == patch_origins(1920, 800, 650)
    assert sorted({int(y) for y in w[:, 1]}) == [0, 280]
    assert len(w) == 6 and (w[:, 2] - w[:, 0] == 800).all() and (w[:, 3] - w[:, 1] == 800).all()
    # row by row
    assert w[:3, 1].tolist() == [0, 0, 0] and w[:3, 0].tolist() == [0, 650, 1120]
    # 4000x3000, 800 px, overlap 0.2 -> stride 800 - int(160.0) = 640
    assert slice_strides(800, 0.2) == ((800, 800), (640, 640))
    w = slice_windows(3000, 4000, 800, 0.2)
    assert sorted({int(x) for x in w[:, 0]}) == [0, 640, 1280, 1920, 2560, 3200]
    assert sorted({int(y) for y in w[:, 1]}) == [0, 640, 1280, 1920, 2200]
    # every pixel is in some slice, and the windows stay in the image
    for H, W, sh, sw, oh, ow in CASES[:-1]:
        w = slice_windows(H, W, (sh, sw), (oh, ow))
        cover = np.zeros((H, W), bool)
        for x0, y0, x1, y1 in w:
            cover[y0:y1, x0:x1] = True
        assert cover.all() and (w[:, :2] >= 0).all() and (w[:, 2] <= W).all() and (w[:, 3] <= H).all()


def test_small_and_non_square_images():
    assert slice_windows(300, 500, 800, 0.2).tolist() == [[0, 0, 500, 300]]
    assert slice_windows(300, 1000, 800, 0.2).tolist() == [[0, 0, 800, 300], [200, 0, 1000, 300]]
    assert slice_windows(1, 1, 800).tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize("kwargs,msg", [
    (dict(slice_size=0), "positive"), (dict(slice_size=(800,)), "pair"), (dict(slice_size="a"), "pair"),
    (dict(slice_size=800, overlap=1.0), r"\[0, 1\)"), (dict(slice_size=800, overlap=-0.1), r"\[0, 1\)"),
    (dict(slice_size=800, stride=801), "larger than the slice"), (dict(slice_size=800, stride=0), "positive"),
    (dict(slice_size=800, overlap=None), "overlap ratio or a stride"),
])
def test_bad_settings_are_one_line(kwargs, msg):
    with pytest.raises(ValueError, match=msg) as e:
        slice_strides(**kwargs)
    assert "\n" not in str(e.value)


def test_empty_image_is_refused():
    with pytest.raises(ValueError, match="empty image"):
        slice_windows(0, 100, 64)


def test_draw_slice_windows():
    img = np.zeros((100, 200, 3), np.uint8)
    w = slice_windows(50, 100, 40, 0.25)
    out = draw_slice_windows(img, w, scale=2.0, thickness=1)
    assert out.shape == img.shape and img.max() == 0  # a copy
    x0, y0, x1, y1 = (w[0] * 2).tolist()
    assert out[y0 + 5, x0].any() and out[y0, x0 + 20].any() and not out[y0 + 5, x0 + 5].any()
