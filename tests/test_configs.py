"""Every config under configs/ loads, instantiates its model, and runs training and
inference steps (small random inputs; the real datasets are not available here)."""
from pathlib import Path

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from sod2.config import configs_root, get_config, get_config_file

CONFIGS = sorted(str(p.relative_to(configs_root())) for p in configs_root().rglob("*.py")
                 if "common" not in p.parts)


def _inputs(n, size=128, with_gt=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        d = {"image": torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8),
             "height": size, "width": size}
        if with_gt:
            k = 0 if i == 0 else 5  # one image without objects
            xy = torch.rand(k, 2, generator=g) * (size - 40)
            wh = 4 + torch.rand(k, 2, generator=g) * 30
            d["instances"] = Instances((size, size), gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                                       gt_classes=torch.zeros(k, dtype=torch.int64))
        out.append(d)
    return out


def test_configs_found_without_pkg_resources():
    assert "baselines/faster_rcnn_R18s_fpn_synthetic.py" in CONFIGS
    assert Path(get_config_file("common/train.py")).is_file()
    with pytest.raises(FileNotFoundError, match="no such sod2 config"):
        get_config_file("nope/missing.py")


def test_config_names_are_importable_and_unique():
    """No config file name contains '-' (each config can be imported as a module, e.g. by its
    method twin), and no two configs share a stem: the default output folder is
    ``./output/<stem>`` (sod2.engine.lazy_train.derive_output_dir), so two configs with one
    stem would write into the same folder."""
    dashed = sorted(str(p.relative_to(configs_root())) for p in configs_root().rglob("*.py") if "-" in p.name)
    assert dashed == [], f"config names with '-': {dashed}"
    stems = {}
    for path in CONFIGS:
        stems.setdefault(Path(path).stem, []).append(path)
    shared = {s: paths for s, paths in stems.items() if len(paths) > 1}
    assert shared == {}, f"configs sharing a stem (and so an output folder): {shared}"


def test_configs_leave_output_dir_to_their_file_name():
    """No config sets ``train.output_dir``: each one runs in ``./output/<its own stem>``. A
    config restating ``./output/<stem>`` would hand that folder to every config that imports
    it (a child would write into its parent's folder)."""
    from sod2.engine.lazy_train import load_config, derive_output_dir

    wrong = {}
    for path in CONFIGS:
        cfg = load_config(get_config_file(path), warn=False)
        loaded = cfg.train.output_dir
        derived = derive_output_dir(cfg, get_config_file(path))
        want = "./output/" + Path(path).name[:-len(".py")]
        if loaded != "./output" or derived != want:
            wrong[path] = f"loads {loaded!r}, runs in {derived!r}, want {want!r}"
    assert wrong == {}, "\n".join(f"{k}: {v}" for k, v in wrong.items())


@pytest.mark.parametrize("path", CONFIGS)
def test_config_trains_and_infers(path, tmp_path):
    cfg = get_config(path)
    if "slice_size" in cfg.model:  # sliced inference wraps the model (tests/inference cover it)
        cfg = cfg.copy()
        cfg.model = cfg.model.model
    # the trainer saves the resolved config: every interpolation must resolve
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    assert (tmp_path / "config.yaml").exists()
    assert cfg.train.device == "auto" and cfg.train.max_iter > 0
    if path.startswith("yolox/"):  # YOLOX's COCO recipe trains from scratch
        assert cfg.train.init_checkpoint == ""
    elif "R18s" not in path and "_synthetic" not in path and "_cpu" not in path:
        # ImageNet backbones (R-CNNs), converted COCO weights (Foreground Probing)
        assert cfg.train.init_checkpoint.startswith(("detectron2://ImageNetPretrained/", "./weights/"))
    # dataloaders, evaluator and schedule instantiate lazily; check they are complete
    for key in ("train", "test", "evaluator"):
        assert key in cfg.dataloader
    instantiate(cfg.lr_multiplier)
    backbone = cfg.model.backbone
    if "bottom_up" in backbone:
        backbone.bottom_up.freeze_at = 0
    elif "freeze_at" in backbone:  # RT-DETR's ResNet-vd is the backbone itself
        backbone.freeze_at = 0
    if "square_pad" in backbone:  # YOLOX pads to its test size: keep the random inputs small
        backbone.square_pad = 0
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    cfg.optimizer.lr = 0.0  # random weights: a real step could diverge; the step itself is tested
    opt = instantiate(cfg.optimizer)
    model.train()
    with EventStorage(0):
        losses = model(_inputs(2))
        assert losses and all(torch.isfinite(v) for v in losses.values())
        assert "total_loss" not in losses
        sum(losses.values()).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(_inputs(1, with_gt=False))
    assert "instances" in out[0]


def test_hituav_baseline_on_real_sample(hituav_datasets, tmp_path):
    """The HIT-UAV baseline config end to end on the real thermal images (grayscale JPEGs
    with DontCare regions): 2 training steps through its data loader, then evaluation."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.engine import default_argument_parser

    from sod2.engine.lazy_train import main

    name = "hituav_val_first3"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("hituav_val")[:3])
        MetadataCatalog.get(name).set(**{k: v for k, v in MetadataCatalog.get("hituav_val").as_dict().items()
                                         if k != "name"})
    args = default_argument_parser().parse_args([
        "--config-file", get_config_file("baselines/faster_rcnn_R50_fpn_hituav_1x.py"),
        "train.init_checkpoint=", "train.device=cpu", "train.max_iter=2", "train.eval_period=2",
        f"train.output_dir={tmp_path}", "dataloader.train.dataset.names=hituav_val",
        "dataloader.train.total_batch_size=1", "dataloader.train.num_workers=0",
        f"dataloader.test.dataset.names={name}", "dataloader.test.num_workers=0",
        "lr_multiplier.warmup_length=0.5", "lr_multiplier.scheduler.num_updates=3",
        "lr_multiplier.scheduler.milestones=[1,2]", "model.backbone.bottom_up.freeze_at=5"])
    main(args)
    metrics = (tmp_path / "metrics.json").read_text()
    assert '"bbox/AP"' in metrics and (tmp_path / f"{name}_results.json").exists()
