"""SODA-D whole test images evaluated with on-the-fly slicing
(configs/cfinet/cfinet_R50_fpn_sodad_sliced.py) give the same detections and the same
numbers as the pre-split patches (tools/split_images.py + the evaluator's patch merge)
with the same weights."""
import json
import math

import detectron2.data.transforms as T
import torch
from detectron2.config import LazyCall as L
from detectron2.config import instantiate

from sod2.config import get_config
from sod2.engine.lazy_train import do_test
from sod2.inference import FillIgnoreMapper, SlicedInference

from ..projects.test_sodad_end_to_end import _split, _write_soda


def _small(model):
    """CFINet's SODA-D model with the synthetic configs' small backbone and heads (CPU speed)."""
    small = get_config("cfinet/cfinet_R18s_fpn_synthetic.py").model
    model.backbone = small.backbone
    model.pixel_std = small.pixel_std
    model.cfinet.crpn.head.in_channels = 64
    model.cfinet.crpn.post_nms_topk = (300, 300)
    model.roi_heads.box_head = small.roi_heads.box_head
    model.roi_heads.box_predictor = small.roi_heads.box_predictor
    model.roi_heads.box_predictor.num_classes = 9
    model.roi_heads.box_predictor.test_topk_per_image = 100
    model.cfinet.imitation = None
    return model


def test_on_the_fly_slicing_equals_the_pre_split_path(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    monkeypatch.setenv("SOD2_DATASETS", str(root))
    _write_soda(root, n_train=1, n_test=2)
    _split(root, "test", train_mode=False)  # 320 px patches, stride 260, ignore regions painted 0
    resize = [L(T.ResizeShortestEdge)(short_edge_length=384, max_size=384)]  # each patch x1.2

    patches = get_config("cfinet/cfinet_R50_fpn_sodad_1x.py")
    _small(patches.model)
    patches.dataloader.test.mapper.augmentations = resize
    patches.dataloader.test.num_workers = 0
    patches.train.output_dir = str(tmp_path / "patches")

    sliced = get_config("cfinet/cfinet_R50_fpn_sodad_sliced.py")
    assert sliced.model._target_ is SlicedInference and sliced.dataloader.test.mapper._target_ is FillIgnoreMapper
    assert sliced.dataloader.test.dataset.names == "sodad_test"
    _small(sliced.model.model)
    sliced.model.update(slice_size=320, stride=260, slice_augmentations=resize)
    sliced.dataloader.test.num_workers = 0
    sliced.train.output_dir = str(tmp_path / "sliced")

    torch.manual_seed(0)
    model = instantiate(patches.model).eval()
    wrapped = instantiate(sliced.model).eval()
    wrapped.load_state_dict(model.state_dict())  # the same weights
    a = do_test(patches, model)["bbox"]
    b = do_test(sliced, wrapped)["bbox"]
    assert set(a) == set(b)
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], k
    ra = json.loads((tmp_path / "patches" / "sodad_test_patches_results.json").read_text())
    rb = json.loads((tmp_path / "sliced" / "sodad_test_results.json").read_text())
    key = lambda r: (r["image_id"], -r["score"], r["bbox"], r["category_id"])  # noqa: E731
    assert len(ra) > 100 and sorted(ra, key=key) == sorted(rb, key=key)
