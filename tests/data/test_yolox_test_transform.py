"""YOLOX's test path equals the official evaluation's: the network input (config's test mapper
-> model.preprocess_image) pixel for pixel against an independent numpy/OpenCV implementation
of the official steps, and the boxes mapped back by dividing by the one ratio r."""
import glob
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import instantiate
from detectron2.data import transforms as T
from detectron2.structures import Boxes, Instances

from sod2.config import get_config
from sod2.data import SODDatasetMapper
from sod2.data.transforms import YOLOXTestResize
from sod2.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THERMAL = sorted(glob.glob(os.path.join(REPO, "tests/fixtures/hituav-subset/hit-uav/*/*.jpg")))[0]  # 640x512


def official_network_input(path, test_size, pre_resize=True):
    """The official YOLOX evaluation's input, written from its steps: ``cv2.imread`` (BGR);
    ``COCODataset.load_resized_img``: r = min(T/h, T/w), cv2.resize INTER_LINEAR to
    (int(w r), int(h r)); ``ValTransform``'s ``preproc``: the same again on that image, pasted
    top-left into a T x T canvas of 114, HWC -> CHW float32, no normalisation. Returns the
    (1, 3, T, T) tensor and the r the evaluator divides the boxes by."""
    img = cv2.imread(path)
    r = min(test_size / img.shape[0], test_size / img.shape[1])
    if pre_resize:
        img = cv2.resize(img, (int(img.shape[1] * r), int(img.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded = np.ones((test_size, test_size, 3), dtype=np.uint8) * 114
    r2 = min(test_size / img.shape[0], test_size / img.shape[1])
    resized = cv2.resize(img, (int(img.shape[1] * r2), int(img.shape[0] * r2)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded[: int(img.shape[0] * r2), : int(img.shape[1] * r2)] = resized
    chw = np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)
    return torch.from_numpy(chw)[None], r


def _png(tmp_path, h, w, seed=0):
    """A random-texture image (smooth + noise, so that interpolation differences show)."""
    rng = np.random.default_rng(seed)
    low = cv2.resize(rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    img = np.clip(low.astype(np.int16) + rng.integers(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8)
    path = str(tmp_path / f"img_{h}x{w}.png")
    cv2.imwrite(path, img)
    return path


def _sod2_network_input(config, path):
    """What sod2 feeds the network: the config's test mapper, then model.preprocess_image."""
    cfg = get_config(config)
    mapper = instantiate(cfg.dataloader.test.mapper)
    model = instantiate(cfg.model).eval()
    img = cv2.imread(path)
    d = mapper({"file_name": path, "height": img.shape[0], "width": img.shape[1], "image_id": 1})
    return model.preprocess_image([d]).tensor, d, model


# (config, image: "thermal" = the 640x512 JPEG fixture, or (h, w) of a generated PNG)
CASES = [
    ("yolox/yolox_tiny_coco.py", "thermal"),  # 416: int(512 * 0.65) = 332 rows (333 rounded)
    ("yolox/yolox_s_coco.py", "thermal"),  # 640: no resize
    ("yolox/yolox_nano_coco.py", (333, 517)),
    ("yolox/yolox_s_coco.py", (333, 517)),  # upscaled
    ("yolox/yolox_s_coco.py", (517, 333)),
    ("yolox/yolox_tiny_coco.py", (300, 330)),  # 330 * (416 / 330) < 416: the second resize stretches
]


@pytest.mark.parametrize("config,image", CASES)
def test_network_input_equals_the_official_evaluation(config, image, tmp_path):
    path = THERMAL if image == "thermal" else _png(tmp_path, *image)
    test_size = 416 if ("tiny" in config or "nano" in config) else 640
    ours, d, _ = _sod2_network_input(config, path)
    ref, r = official_network_input(path, test_size)
    assert ours.shape == ref.shape == (1, 3, test_size, test_size)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, ref), f"max |diff| {(ours - ref).abs().max().item()}"
    assert d["resize_ratio"] == r


def test_the_second_resize_of_the_official_evaluation_matters(tmp_path):
    """(h, w) = (300, 330) at 416: r = 416/330 but int(330 r) = 415; the evaluation's preproc resizes the
    415-wide image again to 416, the demo (preproc alone) keeps 415 columns."""
    path = _png(tmp_path, 300, 330, seed=3)
    img = cv2.imread(path)
    evaluation, _ = official_network_input(path, 416, pre_resize=True)
    demo, _ = official_network_input(path, 416, pre_resize=False)
    assert not torch.equal(evaluation, demo) and (demo[0, :, :378, 415] == 114).all()
    for pre_resize, ref in ((True, evaluation), (False, demo)):
        t = YOLOXTestResize(416, pre_resize=pre_resize).get_transform(img)
        out = torch.from_numpy(np.ascontiguousarray(t.apply_image(img).transpose(2, 0, 1))).float()
        padded = torch.full((3, 416, 416), 114.0)
        padded[:, :out.shape[1], :out.shape[2]] = out
        assert torch.equal(padded, ref[0])
        assert t.ratio == 416 / 330


def test_boxes_are_divided_by_the_single_ratio_not_rescaled_per_axis(monkeypatch):
    """640x512 at 416: r = 0.65, network input 416 x 332 (int truncates 332.8). Hand boxes in
    network-input pixels come back divided by 0.65 on both axes; Detectron2's per-axis rescale
    would multiply y by 512 / 332 (box 2: 400.96 instead of 400). The COCO configs keep boxes
    that leave the image unclipped, as the official evaluator."""
    _, d, model = _sod2_network_input("yolox/yolox_nano_coco.py", THERMAL)
    assert d["image"].shape[1:] == (332, 416) and d["resize_ratio"] == 0.65
    net = torch.tensor([[65.0, 130.0, 325.0, 260.0],     # -> (100, 200, 500, 400)
                        [13.0, 6.5, 26.0, 19.5],          # -> (20, 10, 40, 30)
                        [390.0, 320.0, 420.0, 340.0]])    # -> past the right/bottom border

    def hand_inference(preds, obj_logits, image_sizes):
        return [Instances(image_sizes[0], pred_boxes=Boxes(net.clone()), scores=torch.tensor([0.9, 0.8, 0.7]),
                          pred_classes=torch.tensor([0, 1, 2]))]

    monkeypatch.setattr(model, "inference", hand_inference)
    with torch.no_grad():
        out = model([d])[0]["instances"]
    assert out.image_size == (512, 640)
    expected = torch.tensor([[100.0, 200.0, 500.0, 400.0], [20.0, 10.0, 40.0, 30.0],
                             [600.0, 320 / 0.65, 420 / 0.65, 340 / 0.65]])
    torch.testing.assert_close(out.pred_boxes.tensor, expected, rtol=0, atol=1e-4)
    # bit for bit the official float32 ``bboxes /= r``
    assert torch.equal(out.pred_boxes.tensor, torch.from_numpy(net.numpy() / np.float32(0.65)))
    per_axis_y = net[0, 3].item() * 512 / 332
    assert abs(per_axis_y - 400.0) > 0.9  # the rescale this replaces would be ~1 px off
    assert out.scores.tolist() == pytest.approx([0.9, 0.8, 0.7]) and out.pred_classes.tolist() == [0, 1, 2]

    model.clip_test_boxes = True  # Detectron2's convention: clipped to the image, empty ones dropped
    net[1] = torch.tensor([420.0, 10.0, 430.0, 20.0])  # wholly right of the image: dropped
    with torch.no_grad():
        out = model([d])[0]["instances"]
    assert len(out) == 2 and out.pred_classes.tolist() == [0, 2]
    torch.testing.assert_close(out.pred_boxes.tensor[1], torch.tensor([600.0, 320 / 0.65, 640.0, 512.0]),
                               rtol=0, atol=1e-4)


def test_inputs_without_a_ratio_keep_detectron2s_rescale(monkeypatch):
    """No ``resize_ratio`` (another resize, sliced inference): per-axis rescale and clip, as
    ``detector_postprocess``; with ``clip_test_boxes=False`` the same scale, unclipped."""
    model = instantiate(get_config("yolox/yolox_nano_coco.py").model).eval()
    model.clip_test_boxes = True
    net = torch.tensor([[10.0, 10.0, 50.0, 60.0], [90.0, 40.0, 110.0, 70.0]])
    monkeypatch.setattr(model, "inference", lambda p, o, sizes: [Instances(sizes[0], pred_boxes=Boxes(net.clone()),
                                                                           scores=torch.ones(2),
                                                                           pred_classes=torch.zeros(2, dtype=torch.long))])
    x = {"image": torch.zeros(3, 64, 100, dtype=torch.uint8), "height": 128, "width": 150}
    with torch.no_grad():
        out = model([x])[0]["instances"]
    torch.testing.assert_close(out.pred_boxes.tensor, torch.tensor([[15.0, 20.0, 75.0, 120.0],
                                                                    [135.0, 80.0, 150.0, 128.0]]))
    model.clip_test_boxes = False
    with torch.no_grad():
        out = model([x])[0]["instances"]
    torch.testing.assert_close(out.pred_boxes.tensor[1], torch.tensor([135.0, 80.0, 165.0, 140.0]))


def test_mapper_keeps_the_ratio_only_for_a_lone_yolox_resize(tmp_path):
    path = _png(tmp_path, 100, 160)
    d = {"file_name": path, "height": 100, "width": 160, "image_id": 1, "annotations": []}
    out = SODDatasetMapper(False, augmentations=[YOLOXTestResize(64)])(d)
    assert out["resize_ratio"] == 0.4 and tuple(out["image"].shape) == (3, 40, 64)
    out = SODDatasetMapper(False, augmentations=[T.ResizeShortestEdge(64, 64)])(d)
    assert "resize_ratio" not in out
    with pytest.raises(UserError, match="only test-time augmentation"):
        SODDatasetMapper(False, augmentations=[YOLOXTestResize(64), T.RandomFlip(prob=1.0)])(d)
    out = SODDatasetMapper(True, augmentations=[YOLOXTestResize(64), T.RandomFlip(prob=1.0)])(d)
    assert "resize_ratio" not in out  # training: the ratio is not needed


def test_transform_maps_coordinates_by_the_ratio_and_rejects_degenerate_images():
    t = YOLOXTestResize((416, 416)).get_transform(np.zeros((512, 640, 3), np.uint8))
    assert (t.new_h, t.new_w, t.ratio) == (332, 416, 0.65)
    np.testing.assert_allclose(t.apply_coords(np.array([[100.0, 200.0], [640.0, 512.0]])),
                               [[65.0, 130.0], [416.0, 332.8]])
    seg = np.zeros((512, 640), np.uint8)
    seg[256:, :] = 3
    out = t.apply_segmentation(seg)
    assert out.shape == (332, 416) and set(np.unique(out)) == {0, 3}
    with pytest.raises(UserError, match="too elongated"):
        YOLOXTestResize(416).get_transform(np.zeros((1, 2000, 3), np.uint8))
