"""SlicedInference around sod2's detectors (Faster R-CNN, RetinaNet, CFINet, SR-TOD, YOLOX),
inside inference_on_dataset with the evaluator, and built from a config by with_slicing."""
import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import BoxMode

from sod2.config import get_config
from sod2.data import SODDatasetMapper
from sod2.evaluation.evaluator import ScaleBucketEvaluator
from sod2.inference import SlicedInference

from .fake_detector import FakeDetector, scene

MODELS = ["baselines/faster_rcnn_R18s_fpn_synthetic.py", "baselines/retinanet_R18s_fpn_synthetic.py",
          "cfinet/cfinet_R18s_fpn_synthetic.py", "srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py",
          "fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py"]


def _config_module(path):
    """A configs/ helper file as a Python module (its functions; LazyConfig.load keeps only configs)."""
    from ..modules import config_module

    return config_module(path)


def _image(seed=0, h=200, w=300):
    rng = np.random.default_rng(seed)
    return torch.as_tensor(rng.integers(0, 256, (3, h, w), dtype=np.uint8))


def _match(a, b):
    """Both Instances hold the same detections: same count, and each detection of ``a`` has
    one of ``b`` of its class with boxes within 1e-2 px and scores within 1e-4 (float
    differences between batched and single convolutions)."""
    assert len(a) == len(b)
    ra = np.c_[a.pred_boxes.tensor.numpy(), a.scores.numpy() * 100, a.pred_classes.numpy() * 1e4]
    rb = np.c_[b.pred_boxes.tensor.numpy(), b.scores.numpy() * 100, b.pred_classes.numpy() * 1e4]
    dist = np.abs(ra[:, None] - rb[None]).max(-1)
    assert (dist.min(1) < 1e-2).all() and (dist.min(0) < 1e-2).all()


@pytest.mark.parametrize("config", MODELS)
def test_every_sod2_detector_runs_sliced_and_batching_keeps_results(config):
    torch.manual_seed(0)
    cfg = get_config(config)
    if "roi_heads" in cfg.model or "max_detections_per_image" in cfg.model:
        _config_module("common/models/limits.py").set_detections_per_image(cfg.model, 50)
    pg = cfg.model.get("proposal_generator")
    if pg is not None and "post_nms_topk" in pg:  # fewer proposals: a faster test
        pg.post_nms_topk = (300, 100)
    if "test_score_thresh" in cfg.model:  # untrained one-stage heads score ~0.01
        cfg.model.test_score_thresh = 0.0
    model = instantiate(cfg.model).eval()
    inputs = [{"image": _image(0, 128, 200), "height": 128, "width": 200}]
    one = SlicedInference(model, slice_size=96, overlap=0.2, batch_size=1, full_image=True)(inputs)[0]["instances"]
    many = SlicedInference(model, slice_size=96, overlap=0.2, batch_size=6, full_image=True)(inputs)[0]["instances"]
    assert one.image_size == (128, 200) and len(one) > 0
    boxes = one.pred_boxes.tensor
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 3] <= 128).all()
    _match(one, many)


def _register(tmp_path, name, images):
    """A dataset of scene images (png) whose annotations are their rectangles."""
    records = []
    for i, (h, w, rects) in enumerate(images):
        path = tmp_path / f"{name}_{i}.png"
        cv2.imwrite(str(path), scene(h, w, rects).numpy().transpose(1, 2, 0)[:, :, ::-1])
        records.append({"file_name": str(path), "image_id": i + 1, "height": h, "width": w, "annotations": [
            {"bbox": [x0, y0, x1, y1], "bbox_mode": BoxMode.XYXY_ABS, "category_id": c, "iscrowd": 0, "ignore": 0}
            for x0, y0, x1, y1, c in rects]})
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"], eval_protocol="coco")
    return records


def test_inside_inference_on_dataset_with_the_evaluator(tmp_path):
    rects = [(10, 12, 40, 40, 0), (150, 20, 190, 60, 1), (290, 100, 330, 130, 2), (370, 190, 400, 230, 0)]
    _register(tmp_path, "sliced_test_scenes", [(240, 400, rects), (200, 180, rects[:1]), (240, 400, [])])
    # the mapper reads RGB so that channel 0 (the fake detector's) is the red one written above
    loader = build_detection_test_loader(DatasetCatalog.get("sliced_test_scenes"),
                                         mapper=SODDatasetMapper(is_train=False, augmentations=[], image_format="RGB"),
                                         num_workers=0)
    model = SlicedInference(FakeDetector(), slice_size=128, overlap=0.25, match_metric="ios", batch_size=4)
    res = inference_on_dataset(model, loader, ScaleBucketEvaluator("sliced_test_scenes", distributed=False))
    assert res["bbox"]["AP"] == pytest.approx(100.0) and res["bbox"]["AP50"] == pytest.approx(100.0)
    ev = ScaleBucketEvaluator("sliced_test_scenes", distributed=False)
    inference_on_dataset(model, loader, ev)
    assert [len(p["scores"]) for p in ev._predictions] == [4, 1, 0]  # one detection per object


def test_with_slicing_config(tmp_path):
    cfg = get_config("baselines/faster_rcnn_R18s_fpn_synthetic.py")
    plain = instantiate(cfg.model).eval()
    ckpt = tmp_path / "m.pth"
    DetectionCheckpointer(plain, str(tmp_path)).save("m")
    import detectron2.data.transforms as T
    from detectron2.config import LazyCall as L

    cfg.dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]
    cfg.model = _config_module("common/slicing.py").with_slicing(cfg.model, size=96, overlap=0.25, full_image=True, merge="greedynmm",
                                     metric="ios", dataloader=cfg.dataloader)
    assert cfg.dataloader.test.mapper.augmentations == []  # resizing moved to the slices
    sliced = instantiate(cfg.model).eval()
    assert isinstance(sliced, SlicedInference) and sliced.merge == "greedynmm" and sliced.full_image
    assert isinstance(sliced.slice_augmentations[0], T.ResizeShortestEdge)
    DetectionCheckpointer(sliced).load(str(ckpt))  # the plain model's checkpoint
    for k, v in plain.state_dict().items():
        assert torch.equal(v, sliced.model.state_dict()[k])
    img = _image(1, 256, 256)
    out = sliced([{"image": img, "height": 256, "width": 256}])[0]["instances"]
    assert out.image_size == (256, 256)
    # model.enabled=False: the plain model with the moved resizing, same detections
    sliced.enabled = False
    off = sliced([{"image": img, "height": 256, "width": 256}])[0]["instances"]
    small = torch.as_tensor(T.ResizeShortestEdge(128, 128).get_transform(img.permute(1, 2, 0).numpy())
                            .apply_image(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1).copy())
    with torch.no_grad():
        ref = plain([{"image": small, "height": 256, "width": 256}])[0]["instances"]
    _match(off, ref)


def test_slicing_block_from_overrides():
    from sod2.config import get_config_file
    from sod2.engine.lazy_train import ConfigError, load_config
    from sod2.inference import apply_slicing_block

    # the trainer's load_config applies the block: two overrides slice any config
    cfg = load_config(get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py"),
                      ["+slicing.size=96", "+slicing.overlap=0.25", "+slicing.merge=greedynmm"], warn=False)
    assert "slicing" not in cfg and cfg.model._target_ is SlicedInference
    assert not cfg.dataloader.test.mapper.augmentations  # the test resizing moved to the slices
    m = instantiate(cfg.model)
    assert (m.slice_h, m.stride_y, m.merge) == (96, 72, "greedynmm")
    assert apply_slicing_block(cfg) is cfg  # no block: unchanged
    with pytest.raises(ConfigError, match="unknown key.*sise"):
        load_config(get_config_file("baselines/faster_rcnn_R18s_fpn_synthetic.py"), ["+slicing.sise=96"], warn=False)
