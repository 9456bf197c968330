"""Guided slicing (issue 17 item 1, 6): which slices run for a hand-built foreground map, the
margin, the empty image, objects on slice borders, threshold 0 = exhaustive, the families'
maps read from a real model's full-image pass."""
import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from torch import nn

from sod2.config import get_config
from sod2.errors import UserError
from sod2.inference import SlicedInference
from sod2.inference.guided import (ForegroundMap, GuidedSlicing, detections_map, foreground_tap,
                                   maps_to_foreground, select_windows)

from .fake_detector import detect


def test_select_windows_against_a_hand_built_map():
    prob = torch.zeros(4, 6)  # cells of 10 px: 60 x 40 px
    prob[1, 4] = 0.8          # x 40-50, y 10-20
    prob[3, 0] = 0.3          # x 0-10, y 30-40
    fg = ForegroundMap(prob, 10.0, 10.0)
    windows = np.array([[0, 0, 30, 20], [30, 0, 60, 20], [0, 20, 30, 40], [30, 20, 60, 40]])
    sel = select_windows(windows, fg, threshold=0.5, margin=0)
    assert sel.ran.tolist() == [False, True, False, False]
    assert sel.scores.tolist() == pytest.approx([0.0, 0.8, 0.3, 0.0])
    assert select_windows(windows, fg, threshold=0.25, margin=0).ran.tolist() == [False, True, True, False]
    # the margin widens each window: 15 px reach x 45 (cell 4), 5 px only x 35
    assert select_windows(windows[:1], fg, 0.5, margin=15).ran.tolist() == [True]
    assert select_windows(windows[:1], fg, 0.5, margin=5).ran.tolist() == [False]
    # threshold 0: every slice, whatever the map (also none)
    assert select_windows(windows, fg, 0.0, 0).ran.all()
    assert select_windows(windows, None, 0.0, 0).ran.all()
    assert not select_windows(windows, None, 0.1, 0).ran.any()


def test_detections_map_hand_values():
    fg = detections_map(torch.tensor([[5.0, 5.0, 12.0, 9.0], [0.0, 0.0, 20.0, 20.0]]), torch.tensor([0.9, 0.2]),
                        height=30, width=40, cell=8)
    assert fg.prob.shape == (4, 5) and fg.stride_x == fg.stride_y == 8.0
    want = torch.zeros(4, 5)
    want[0:3, 0:3] = 0.2
    want[0:2, 0:2] = 0.9  # x 5-12 -> cells 0, 1; y 5-9 -> cells 0, 1
    assert torch.equal(fg.prob, want)
    with pytest.raises(ValueError, match="non-finite"):
        detections_map(torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), torch.tensor([0.5]), 10, 10, 4)


def test_maps_to_foreground_levels_and_scale():
    fine = torch.zeros(8, 8)  # stride 4 over a 32x32 padded input
    coarse = torch.zeros(4, 4)  # stride 8
    coarse[3, 0] = 0.7  # -> fine cells rows 6-7, cols 0-1
    fine[0, 4] = 0.4
    fine[0, 5] = 0.5  # in the padding (x >= 20): cut
    fg = maps_to_foreground([fine, coarse], [4.0, 8.0], valid_hw=(24, 20), image_hw=(48, 40), source="x")
    assert fg.prob.shape == (6, 5)  # ceil(24 / 4), ceil(20 / 4): the padding is cut
    assert fg.prob[0, 4] == pytest.approx(0.4) and fg.prob.max() == pytest.approx(0.4)  # rows 6-7 are padding
    assert (fg.stride_y, fg.stride_x) == (8.0, 8.0)  # 4 model px = 8 image px
    assert torch.equal(maps_to_foreground([fine, coarse], [4.0, 8.0], (32, 32), (32, 32), "x").prob[6:, :2],
                       torch.full((2, 2), 0.7))


def test_levels_of_rounded_up_sizes_land_on_their_pixels():
    """A 40 px wide input: the stride-4 level has 10 cells, the stride-32 level ceil(40 / 32) = 2;
    the coarse cell 1 covers pixels 32-64, i.e. fine cells 8-9 only (stretching 2 cells to 10
    would put it on cells 5-9)."""
    fine = torch.zeros(1, 10)
    coarse = torch.tensor([[0.0, 0.9]])
    fg = maps_to_foreground([fine, coarse], [4.0, 32.0], valid_hw=(4, 40), image_hw=(4, 40), source="x")
    assert fg.prob[0].tolist() == pytest.approx([0.0] * 8 + [0.9] * 2)


def test_guided_settings_are_checked():
    for bad, match in (({"threshold": 1.5}, "threshold"), ({"margin": -1}, "margin"), ({"source": "rpn"}, "source"),
                       ({"cell": 0}, "cell"), ({"size": 16}, "size")):
        with pytest.raises(UserError, match=match):
            GuidedSlicing(**bad)
    with pytest.raises(UserError, match="guided="):
        SlicedInference(BrightBlobDetector(), slice_size=64, guided=0.3)


class BrightBlobDetector(nn.Module):
    """``fake_detector.detect`` (every bright rectangle of channel 0 is one box, class 0 here)
    with score 0.9, boxes in output pixels; counts its images in ``calls``."""

    def __init__(self, full_image_shift: float = 0.0, slice_side: int = 64):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.calls = 0
        # boxes of an input wider than a slice (the full-image pass) are moved this many
        # pixels right: a full-image pass that localises small objects poorly
        self.full_image_shift = full_image_shift
        self.slice_side = slice_side

    def forward(self, batched):
        out = []
        for d in batched:
            self.calls += 1
            h, w = d["image"].shape[1:]
            boxes, _, _ = detect(d["image"].numpy())
            boxes = torch.from_numpy(boxes)
            boxes[:, 0::2] += self.full_image_shift if w > self.slice_side else 0.0
            sy, sx = d.get("height", h) / h, d.get("width", w) / w
            inst = Instances((d.get("height", h), d.get("width", w)))
            inst.pred_boxes = Boxes(boxes * torch.tensor([sx, sy, sx, sy]))
            inst.scores = torch.full((len(boxes),), 0.9)
            inst.pred_classes = torch.zeros(len(boxes), dtype=torch.int64)
            out.append({"instances": inst})
        return out


def _image(objects, size=(256, 320)):
    img = torch.zeros(3, *size, dtype=torch.uint8)
    for x, y, s in objects:
        img[:, y:y + s, x:x + s] = 255
    return img


def _boxes(out):
    return sorted(tuple(round(v) for v in b) for b in out["instances"].pred_boxes.tensor.tolist())


def test_guided_runs_only_the_slices_with_objects_and_keeps_them():
    det = BrightBlobDetector().eval()
    objects = [(20, 20, 6), (250, 170, 6)]
    wrap = SlicedInference(det, slice_size=64, overlap=0.0, guided=GuidedSlicing(threshold=0.5, margin=0,
                                                                                  source="detections", cell=4))
    out = wrap([{"image": _image(objects)}])[0]
    sel = out["slicing"]
    assert len(sel.windows) == 20 and sel.num_run == 2
    ran = sel.windows[sel.ran].tolist()
    assert ran == [[0, 0, 64, 64], [192, 128, 256, 192]]
    assert det.calls == 1 + 2  # the full image, then the two slices
    assert _boxes(out) == [(20, 20, 26, 26), (250, 170, 256, 176)]


def test_guided_on_an_empty_image_runs_no_slice():
    det = BrightBlobDetector().eval()
    wrap = SlicedInference(det, slice_size=64, overlap=0.2, guided={"threshold": 0.05, "source": "detections"})
    out = wrap([{"image": _image([])}])[0]
    assert out["slicing"].num_run == 0 and det.calls == 1
    assert len(out["instances"]) == 0


def test_margin_keeps_an_object_the_full_image_pass_misplaces():
    """The full-image pass (e.g. at a lower resolution) puts a small object 14 px right of
    where it is, across the border of the slice that holds it: without a margin that slice
    does not run and the object's true box is lost; an 8 px margin reaches the evidence,
    the slice runs and the true box is in the output."""
    image = _image([(52, 100, 8)])  # x 52-60, inside the slice x 0-64 only
    for margin, found in ((0, False), (8, True)):
        det = BrightBlobDetector(full_image_shift=14).eval()
        wrap = SlicedInference(det, slice_size=64, overlap=0.0,
                               guided=GuidedSlicing(threshold=0.5, margin=margin, source="detections", cell=4))
        out = wrap([{"image": image}])[0]
        ran = out["slicing"].windows[out["slicing"].ran].tolist()
        assert ([0, 64, 64, 128] in ran) == found, (margin, ran)
        assert ((52, 100, 60, 108) in _boxes(out)) == found
        assert (66, 100, 74, 108) in _boxes(out)  # the full-image pass's own (misplaced) box is merged too


def test_threshold_zero_equals_exhaustive_slicing_with_the_full_image():
    det = BrightBlobDetector().eval()
    image = _image([(20, 20, 6), (61, 100, 8), (250, 190, 6)])
    exhaustive = SlicedInference(det, slice_size=64, overlap=0.25, full_image=True)([{"image": image}])[0]
    guided = SlicedInference(det, slice_size=64, overlap=0.25,
                             guided=GuidedSlicing(threshold=0.0, source="detections"))([{"image": image}])[0]
    assert guided["slicing"].ran.all()
    for f in ("pred_boxes", "scores", "pred_classes"):
        a, b = getattr(exhaustive["instances"], f), getattr(guided["instances"], f)
        a, b = (a.tensor, b.tensor) if f == "pred_boxes" else (a, b)
        assert torch.equal(a, b), f


@pytest.mark.parametrize("config,family,stride,grid", [
    ("baselines/faster_rcnn_R18s_fpn_synthetic.py", "rpn", 4.0, (50, 60)),  # P2
    ("baselines/retinanet_R18s_fpn_synthetic.py", "retinanet", 8.0, (25, 30)),  # P3
    ("cfinet/cfinet_R18s_fpn_synthetic.py", "crpn", 4.0, (50, 60)),  # CRPN's stage 2 on P2
    ("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py", "yolox", 4.0, (50, 60)),  # P2, objectness after the probe
    ("bsdetr/bsdetr_plain_r18s_synthetic.py", "rtdetr", 8.0, (25, 30)),  # encoder tokens of S3
])
def test_model_maps_of_the_families(config, family, stride, grid):
    """A real model's full-image pass gives its family's map (read by a forward hook): the
    grid of the finest level over the image, probabilities in [0, 1]; threshold 0 equals
    exhaustive slicing; threshold 1 runs no slice (a sigmoid never reaches 1 here)."""
    torch.manual_seed(0)
    model = instantiate(get_config(config).model).eval()
    tap = foreground_tap(model)
    assert tap is not None and tap.name == family
    image = torch.randint(0, 255, (3, 200, 240), dtype=torch.uint8)  # within YOLOX's 256 px test square
    inp = [{"image": image, "height": 200, "width": 240}]
    exhaustive = SlicedInference(model, slice_size=128, overlap=0.2, full_image=True)(inp)[0]
    out = SlicedInference(model, slice_size=128, overlap=0.2, guided=GuidedSlicing(threshold=0.0, source="model"))(inp)[0]
    fg = out["slicing"].foreground
    assert fg.source == family and tuple(fg.prob.shape) == grid and fg.stride_x == fg.stride_y == stride
    assert 0 <= float(fg.prob.min()) and float(fg.prob.max()) <= 1 and float(fg.prob.std()) > 0
    assert torch.equal(out["instances"].pred_boxes.tensor, exhaustive["instances"].pred_boxes.tensor)
    none = SlicedInference(model, slice_size=128, overlap=0.2, guided=GuidedSlicing(threshold=1.0, source="model"))(inp)[0]
    assert none["slicing"].num_run == 0


def test_source_model_on_an_unknown_family_is_one_line():
    with pytest.raises(UserError, match="BrightBlobDetector.*source='detections'"):
        SlicedInference(BrightBlobDetector().eval(), slice_size=64,
                        guided=GuidedSlicing(source="model"))([{"image": _image([(5, 5, 4)], (128, 128))}])


def test_config_block_and_overrides():
    """``+slicing.guided={...}`` on any config gives a guided SlicedInference; its numbers are
    ordinary overrides; a bad one is one line naming the key; ``model.guided=null`` is
    exhaustive slicing again."""
    from sod2.engine.lazy_train import apply_checked_overrides
    from sod2.inference.config import apply_slicing_block

    cfg = get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py")
    cfg = apply_slicing_block(apply_checked_overrides(
        cfg, ["+slicing.size=128", "+slicing.guided={threshold:0.2,margin:16}"], warn=False))
    cfg = apply_checked_overrides(cfg, ["model.guided.threshold=0.05"], warn=False)
    model = instantiate(cfg.model)
    assert isinstance(model, SlicedInference)
    assert model.guided == GuidedSlicing(threshold=0.05, margin=16, source="auto", cell=8)
    bad = apply_checked_overrides(cfg, ["model.guided.threshold=2.0"], warn=False)
    with pytest.raises(UserError, match=r"^model.guided=.*threshold=2.0.*\[0, 1\]$"):
        apply_slicing_block(bad)
    with pytest.raises(UserError, match="slicing.guided="):
        apply_slicing_block(apply_checked_overrides(get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py"),
                                                    ["+slicing.guided={margin:-3}"], warn=False))
    off = apply_checked_overrides(cfg, ["model.guided=null"], warn=False)
    assert instantiate(off.model).guided is None


def test_reduced_full_image_pass_maps_back_to_the_image():
    """GuidedSlicing(size=...): the full-image pass sees the image with its longer side at
    ``size``; its map comes back in image pixels, so the same slices run as with the pass at
    full resolution (objects large enough to survive the resize), and the slices find the
    same boxes; the reduced pass's own detections are not merged."""
    det = BrightBlobDetector(slice_side=64).eval()
    image = _image([(20, 20, 12), (240, 140, 12)])
    full = SlicedInference(det, slice_size=64, overlap=0.0,
                           guided=GuidedSlicing(threshold=0.5, margin=0, source="detections", cell=4))
    small = SlicedInference(det, slice_size=64, overlap=0.0,
                            guided=GuidedSlicing(threshold=0.5, margin=0, source="detections", cell=4, size=160))
    a, b = full([{"image": image}])[0], small([{"image": image}])[0]
    assert a["slicing"].ran.tolist() == b["slicing"].ran.tolist() and b["slicing"].num_run == 2
    assert _boxes(b) == _boxes(a) == [(20, 20, 32, 32), (240, 140, 252, 152)]
    # the reduced pass only guides: threshold 0 is exhaustive slicing without the full image
    det.calls = 0
    zero = SlicedInference(det, slice_size=64, overlap=0.0,
                           guided=GuidedSlicing(threshold=0.0, source="detections", size=160))([{"image": image}])[0]
    plain = SlicedInference(det, slice_size=64, overlap=0.0)([{"image": image}])[0]
    assert det.calls == (1 + 20) + 20 and zero["slicing"].ran.all()
    assert torch.equal(zero["instances"].pred_boxes.tensor, plain["instances"].pred_boxes.tensor)
    # nothing selected (and the reduced pass's detections only guide): an empty result, no crash
    none = SlicedInference(det, slice_size=64, overlap=0.0,
                           guided=GuidedSlicing(threshold=1.0, source="detections", size=160))([{"image": _image([])}])[0]
    assert none["slicing"].num_run == 0 and len(none["instances"]) == 0
