"""SODA-D end to end on a small generated high-resolution dataset with ignore regions:
tools/split_images.py -> CFINet's SODA-D config trained on the patches -> evaluation on
whole images (patch merging, sodad protocol)."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from detectron2.config import LazyCall as L
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser

from sod2.config import get_config
from sod2.data.synthetic import SyntheticConfig, render_image
from sod2.engine.lazy_train import do_test, do_train
from sod2.modeling.methods.cfinet import ExemplarBank, Feat2Embed

REPO = Path(__file__).resolve().parents[2]
SODA_CLASSES = ["people", "rider", "bicycle", "motor", "vehicle", "traffic-sign", "traffic-light",
                "traffic-camera", "warning-cone"]


def _write_soda(root: Path, n_train=3, n_test=2, size=640):
    """SODA-D raw layout: rawData/Images/*.jpg, rawData/Annotations/{train,test}.json with
    categories 1..9 plus 10 'ignore', and an ``ignore`` flag on some boxes."""
    img_dir = root / "SODA-D" / "rawData" / "Images"
    ann_dir = root / "SODA-D" / "rawData" / "Annotations"
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    rng = np.random.default_rng(3)
    cfg = SyntheticConfig(image_size=size, isolated=(20, 30), clusters=(3, 5), ignore_region_prob=1.0)
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(SODA_CLASSES)] + [{"id": 10, "name": "ignore"}]
    for split, n in (("train", n_train), ("test", n_test)):
        images, anns = [], []
        for i in range(n):
            img, objects, regions = render_image(rng, cfg)
            name = f"{split}_{i:03d}.jpg"
            cv2.imwrite(str(img_dir / name), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
            iid = len(images) + 1 + (0 if split == "train" else 1000)
            images.append({"id": iid, "file_name": name, "width": size, "height": size})
            for o in objects:
                x, y, w, h = o["bbox"]
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": o["category_id"] + 1,
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                             "ignore": int(rng.random() < 0.05)})
            for x, y, w, h in regions:
                anns.append({"id": len(anns) + 1, "image_id": iid, "category_id": 10, "bbox": [x, y, w, h],
                             "area": w * h, "iscrowd": 0, "ignore": 1})
        (ann_dir / f"{split}.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                           "categories": cats}))


def _split(root: Path, split: str, train_mode: bool):
    cmd = [sys.executable, str(REPO / "tools" / "split_images.py"), "--dataset", f"sodad_{split}",
           "--output", str(root / "SODA-D" / "patches"), "--split-name", split,
           "--patch-size", "320", "--stride", "260"] + (["--train-mode"] if train_mode else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_sodad_split_train_and_merge(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    monkeypatch.setenv("SOD2_DATASETS", str(root))
    _write_soda(root)
    out = _split(root, "train", train_mode=True)
    assert "patches" in out
    _split(root, "test", train_mode=False)

    whole = DatasetCatalog.get("sodad_test")
    patches = DatasetCatalog.get("sodad_test_patches")
    # 640 px with 320/260: origins 0, 260, 320 per axis -> 9 patches per image, all kept
    assert len(patches) == 9 * len(whole)
    assert {tuple(p["patch"]["origin"]) for p in patches} == {(x, y) for x in (0, 260, 320) for y in (0, 260, 320)}
    train = DatasetCatalog.get("sodad_train_patches")
    assert train and all(any(a["category_id"] >= 0 and not a["ignore"] for a in d["annotations"]) for d in train)
    # ignore regions are painted in the patch images (SODA-D fills them with 0)
    d = next(d for d in patches if any(a["category_id"] < 0 for a in d["annotations"]))
    img = cv2.imread(d["file_name"])
    r = next(a for a in d["annotations"] if a["category_id"] < 0)
    x, y, w, h = (int(round(v)) for v in r["bbox"])
    objects = [a for a in d["annotations"] if a["category_id"] >= 0]
    cx, cy = x + w // 2, y + h // 2
    if not any(ax <= cx <= ax + aw and ay <= cy <= ay + ah for ax, ay, aw, ah in (o["bbox"] for o in objects)):
        assert img[cy, cx].max() == 0

    # CFINet's SODA-D config, made small for the CPU: the synthetic small backbone, no 1.5x
    # resize, 2 iterations; everything else (CRPN, imitation, evaluator) unchanged
    cfg = get_config("cfinet/cfinet_R50_fpn_sodad_1x.py")
    small = get_config("cfinet/cfinet_R18s_fpn_synthetic.py")
    cfg.model.backbone = small.model.backbone
    cfg.model.pixel_std = small.model.pixel_std
    cfg.model.cfinet.crpn.head.in_channels = 64
    cfg.model.roi_heads.box_head = small.model.roi_heads.box_head
    cfg.model.roi_heads.box_predictor = small.model.roi_heads.box_predictor
    cfg.model.roi_heads.box_predictor.num_classes = 9
    cfg.model.cfinet.imitation.embed = L(Feat2Embed)(in_channels=64, hidden_dim=128)
    cfg.model.cfinet.imitation.bank = L(ExemplarBank)(num_classes=9, capacity=8, channels=64)
    cfg.dataloader.train.mapper.augmentations = []
    cfg.dataloader.test.mapper.augmentations = []
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    cfg.dataloader.test.num_workers = 0
    cfg.train.update(device="cpu", max_iter=2, eval_period=0, init_checkpoint="", output_dir=str(tmp_path / "run"),
                     log_period=1)
    cfg.lr_multiplier.scheduler.update(milestones=[1, 2], num_updates=3)
    cfg.lr_multiplier.warmup_length = 0.5
    args = default_argument_parser().parse_args(["--config-file", "x"])
    do_train(args, cfg)
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    model = instantiate(cfg.model)
    DetectionCheckpointer(model).load(str(tmp_path / "run" / "model_final.pth"))
    res = do_test(cfg, model)["bbox"]
    # evaluated on whole images with the sodad protocol: Small headline and its buckets
    assert {"AP", "AP50", "AP_eS", "AP_rS", "AP_gS", "AP_Normal", "AR@1000"} <= set(res)
    saved = json.loads((tmp_path / "run" / "sodad_test_patches_metrics.json").read_text())
    assert saved["protocol"] == "sodad"
    results = json.loads((tmp_path / "run" / "sodad_test_patches_results.json").read_text())
    assert {r["image_id"] for r in results} <= {d["image_id"] for d in whole}  # whole-image ids
    if results:  # merged boxes live in whole-image coordinates (up to 640, beyond one patch)
        assert max(r["bbox"][0] + r["bbox"][2] for r in results) <= 640 + 1
