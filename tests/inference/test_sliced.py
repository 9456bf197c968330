"""SlicedInference with a deterministic stand-in detector: coordinates mapped back exactly,
batching, the full-image pass, padding, resized inputs, empty images, the module's face."""
import pytest
import torch
from detectron2.data import transforms as T

from sod2.inference import SlicedInference, slice_windows

from .fake_detector import FakeDetector, detect, scene

RECTS = [(10, 12, 30, 40, 0), (150, 20, 175, 31, 1), (290, 100, 310, 130, 2),  # near the slice borders
         (60, 180, 64, 184, 1), (370, 190, 400, 230, 0)]


def _sliced(**kw):
    kw.setdefault("slice_size", 128)
    kw.setdefault("overlap", 0.25)
    kw.setdefault("merge", "nms")
    kw.setdefault("match_metric", "ios")  # a clipped part lies inside the whole box
    return SlicedInference(FakeDetector(), **kw).eval()


def _rows(inst):
    return sorted(zip(inst.pred_boxes.tensor.tolist(), inst.pred_classes.tolist()))


def test_boxes_mapped_back_exactly():
    img = scene(240, 400, RECTS)
    out = _sliced()([{"image": img, "height": 240, "width": 400}])[0]["instances"]
    assert out.image_size == (240, 400)
    assert _rows(out) == sorted(([float(x0), float(y0), float(x1), float(y1)], c) for x0, y0, x1, y1, c in RECTS)
    assert out.scores.tolist() == sorted(out.scores.tolist(), reverse=True)


def test_against_a_naive_loop():
    """Every slice detected on its own, shifted by hand, merged by a plain Python NMS."""
    img = scene(240, 400, RECTS)
    boxes, scores = [], []
    for x0, y0, x1, y1 in slice_windows(240, 400, 128, 0.25):
        b, s, _ = detect(img[:, y0:y1, x0:x1].numpy())
        boxes += [[bx0 + x0, by0 + y0, bx1 + x0, by1 + y0] for bx0, by0, bx1, by1 in b.tolist()]
        scores += s.tolist()
    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], boxes[i]))
    kept = []
    for i in order:
        def ios(a, b):
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
            return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
        if all(ios(boxes[i], boxes[k]) < 0.5 for k in kept):
            kept.append(i)
    out = _sliced(class_agnostic=True)([{"image": img}])[0]["instances"]
    assert sorted(out.pred_boxes.tensor.tolist()) == sorted(boxes[k] for k in kept)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batching_does_not_change_results(batch_size):
    imgs = [scene(240, 400, RECTS), scene(100, 90, [(5, 5, 20, 20, 1)]), scene(240, 400, RECTS[:2])]
    ref = _sliced(batch_size=1)([{"image": i} for i in imgs])
    model = _sliced(batch_size=batch_size)
    out = model([{"image": i} for i in imgs])
    for a, b in zip(ref, out):
        assert _rows(a["instances"]) == _rows(b["instances"])
        assert a["instances"].scores.tolist() == b["instances"].scores.tolist()
    n_slices = 2 * len(slice_windows(240, 400, 128, 0.25)) + 1
    assert sum(model.model.calls) == n_slices
    # slices of one size are batched together; the 100x90 image's single slice on its own
    assert max(model.model.calls) == min(batch_size, n_slices - 1)


def test_default_batch_size_follows_the_device():
    """None: one slice per call on the CPU (batching measured slower there), four on an
    accelerator (a parameter on the meta device stands in for one here)."""
    model = _sliced()
    assert model.batch_size is None and model.resolved_batch_size() == 1
    model([{"image": scene(240, 400, RECTS)}])
    assert set(model.model.calls) == {1}
    on_meta = SlicedInference(torch.nn.Linear(1, 1, device="meta"))
    assert on_meta.resolved_batch_size() == 4
    assert SlicedInference(torch.nn.Identity()).resolved_batch_size() == 1  # no parameters: CPU
    assert _sliced(batch_size=3).resolved_batch_size() == 3


def test_full_image_pass_and_single_slice_images():
    img = scene(240, 400, RECTS)
    m = _sliced(full_image=True)
    out = m([{"image": img}])[0]["instances"]
    assert _rows(out) == _rows(_sliced()([{"image": img}])[0]["instances"])
    assert sum(m.model.calls) == len(m.windows(240, 400)) + 1
    # an image within one slice: no extra full-image pass (SAHI's rule)
    m = _sliced(full_image=True)
    m([{"image": scene(100, 120, [(5, 5, 20, 20, 1)])}])
    assert m.model.calls == [1]


def test_resized_input_is_scaled_to_height_width():
    img = scene(240, 400, RECTS)
    out = _sliced()([{"image": img, "height": 480, "width": 1000}])[0]["instances"]
    assert out.image_size == (480, 1000)
    assert _rows(out) == sorted(([x0 * 2.5, y0 * 2.0, x1 * 2.5, y1 * 2.0], c) for x0, y0, x1, y1, c in RECTS)


def test_padding_and_slice_augmentations():
    img = scene(100, 90, [(5, 5, 20, 20, 1), (80, 90, 90, 100, 2)])
    m = _sliced(pad_value=0)
    seen = []
    m.model.register_forward_pre_hook(lambda mod, args: seen.extend(
        (tuple(i["image"].shape), i["height"], i["width"]) for i in args[0]))
    out = m([{"image": img}])[0]["instances"]
    assert seen == [((3, 128, 128), 128, 128)]  # padded to the slice, as split_images pads
    assert _rows(out) == [([5.0, 5.0, 20.0, 20.0], 1), ([80.0, 90.0, 90.0, 100.0], 2)]
    # each slice resized x2 before the model; detections come back in image pixels
    m = _sliced(slice_augmentations=[T.Resize((256, 256), interp=0)])
    out = m([{"image": scene(240, 400, RECTS)}])[0]["instances"]
    assert _rows(out) == sorted(([float(x0), float(y0), float(x1), float(y1)], c) for x0, y0, x1, y1, c in RECTS)


def test_empty_images_and_limits():
    out = _sliced()([{"image": scene(240, 400, [])}])[0]["instances"]
    assert len(out) == 0 and out.pred_boxes.tensor.shape == (0, 4) and out.image_size == (240, 400)
    out = _sliced(max_detections=2)([{"image": scene(240, 400, RECTS)}])[0]["instances"]
    assert len(out) == 2
    with pytest.raises(ValueError, match="'image' tensor"):
        _sliced()([{"image": torch.zeros(3, 0, 10)}])
    with pytest.raises(ValueError, match="'image' tensor"):
        _sliced()([{"file_name": "x.jpg"}])
    with pytest.raises(ValueError, match="wraps an nn.Module"):
        SlicedInference(lambda x: x)
    with pytest.raises(ValueError, match=r"batch_size=0\): must be a positive integer"):
        _sliced(batch_size=0)


def test_module_face_training_disabled_and_state_dict():
    m = _sliced()
    assert m.device == torch.device("cpu")  # the wrapped model's attribute
    assert list(m.state_dict()) == ["weight"]  # checkpoints of the plain model load as they are
    m.load_state_dict({"weight": torch.full((1,), 2.0)})
    assert m.model.weight.item() == 2.0
    with pytest.raises(AttributeError):
        m.no_such_attribute
    img = scene(240, 400, RECTS)
    m.train()
    assert m([{"image": img}])[0]["instances"].image_size == (240, 400)  # the model itself
    assert m.model.calls == [1]
    off = _sliced(enabled=False, slice_augmentations=[T.Resize((120, 200), interp=0)])
    out = off([{"image": img, "height": 240, "width": 400}])[0]["instances"]
    assert off.model.calls == [1] and out.image_size == (240, 400)
    aug = T.AugInput(img.permute(1, 2, 0).numpy().copy())
    T.AugmentationList([T.Resize((120, 200), interp=0)])(aug)
    small = torch.as_tensor(aug.image.transpose(2, 0, 1).copy())
    plain = FakeDetector()([{"image": small, "height": 240, "width": 400}])
    assert _rows(out) == _rows(plain[0]["instances"])


def test_greedynmm_joins_the_parts_of_a_cut_object():
    # no slice holds the whole object (slices 40 px, stride 20, object 20..80): its parts
    # 20-60 and 40-80 (score .04 each, the first keeps) and 20-40 are joined; 60-80 does not
    # touch the keeper's own box 20-60, so greedy merging leaves it (not transitive)
    img = scene(100, 100, [(20, 30, 80, 40, 0)])
    m = SlicedInference(FakeDetector(), slice_size=40, overlap=0.5, merge="greedynmm", match_metric="ios",
                        match_threshold=0.5).eval()
    out = m([{"image": img}])[0]["instances"]
    assert _rows(out) == [([20.0, 30.0, 80.0, 40.0], 0), ([60.0, 30.0, 80.0, 40.0], 0)]
    assert out.scores.tolist() == pytest.approx([0.04, 0.02])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_outputs_stay_on_the_device():
    m = _sliced().to("cuda")
    out = m([{"image": scene(240, 400, RECTS)}])[0]["instances"]
    assert out.scores.device.type == "cuda" and len(out) == len(RECTS)


def test_explicit_interface_forwards_nothing_and_copies_work():
    """The wrapper's interface is its own (module docstring): the wrapped model's attributes
    are reached through ``m.model`` / ``SlicedInference.detector(m)``, never forwarded."""
    import copy

    m = _sliced()
    assert SlicedInference.detector(m) is m.model and isinstance(m.model, FakeDetector)
    plain = FakeDetector()
    assert SlicedInference.detector(plain) is plain
    assert not hasattr(m, "calls")  # the model's attribute is not read through the wrapper
    m.calls = "wrapper's"  # nor written through it
    assert m.model.calls == [] and m.calls == "wrapper's"
    assert m.device == torch.device("cpu")
    assert SlicedInference(torch.nn.Linear(1, 1, device="meta")).device == torch.device("meta")
    assert SlicedInference(torch.nn.Identity()).device == torch.device("cpu")  # nothing: the CPU
    assert list(m.state_dict()) == ["weight"]  # the model's keys, no "model." prefix
    m.load_state_dict({"weight": torch.full((1,), 3.0)})
    assert m.model.weight.item() == 3.0
    c = copy.deepcopy(m)
    assert isinstance(c.model, FakeDetector) and c.slice_h == 128 and c.model is not m.model
    m.train()
    assert m.training and m.model.training
    m.eval()
    assert not m.training and not m.model.training
