"""Foreground Probing on sod2's YOLOX (``FGProbeYOLOX``): training with empty and non-empty ground
truth (L_ref on SimOTA's positives), inference that replaces the objectness of the selected
tokens, padding never selected, off by one override, the maps for drawing, the width check."""
import pytest
import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from sod2.config import get_config_file
from sod2.errors import UserError
from sod2.modeling.methods.fgprobe import FGProbeYOLOX

from ...modules import config_module


def _module(path):
    """A config file without relative imports, as a module (its helper functions too)."""
    return config_module(path)


def _cfg(num_tokens=20, **probe):
    from omegaconf import OmegaConf

    yolox, fg = _module("common/models/yolox.py"), _module("common/models/fgprobe.py")
    cfg = OmegaConf.create({"model": yolox.model})
    yolox.yolox_size(cfg.model, "nano")
    yolox.use_p2(cfg.model)
    cfg.model.iou_loss_type = "ciou"
    cfg.model.num_classes = 3
    cfg.model._target_ = FGProbeYOLOX
    cfg.model.probe = fg.probe
    cfg.model.probe.num_tokens = num_tokens
    for k, v in probe.items():
        cfg.model.probe[k] = v
    return cfg


def _batch(sizes=((96, 128), (64, 64)), seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        n = 0 if i == 1 else 3
        xy = torch.rand(n, 2, generator=g) * 40
        inst = Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + 6 + torch.rand(n, 2, generator=g) * 12], 1)),
                         gt_classes=torch.randint(0, 3, (n,), generator=g))
        out.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                    "height": h, "width": w, "instances": inst})
    return out


def test_training_adds_l_ref_on_simota_positives():
    torch.manual_seed(0)
    model = instantiate(_cfg().model).train()
    assert model.iou_loss_type == "ciou" and len(model.head_strides) == 4 and model.head_strides[0] == 4
    seen = {}
    real = model.probe.losses

    def spy(refined, idx, fg):
        seen.update(refined=refined, idx=idx, fg=fg)
        return real(refined, idx, fg)

    model.probe.losses = spy
    batch = _batch()  # image 1 has no objects
    with EventStorage(0) as st:
        losses = model(batch)
        assert {"loss_ref", "loss_iou", "loss_obj", "loss_cls", "loss_l1"} <= set(losses)
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert "fgprobe/lambda" in st.latest()
    assert seen["idx"].shape == (2, 20)
    # y_ref: the SimOTA foreground mask; image 1 has no ground truth: all negatives
    assert seen["fg"][1].sum() == 0 and seen["fg"][0].sum() > 0
    y = torch.gather(seen["fg"].float(), 1, seen["idx"])
    expect = torch.nn.functional.binary_cross_entropy_with_logits(seen["refined"], y)
    assert losses["loss_ref"].item() == pytest.approx(expect.item())
    probe = model.probe
    assert probe.q_reg.weight.grad is not None and probe.gate.weight.grad is not None
    # the gathered features carry gradient into the head's branches
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in model.head.reg_convs["p2"].parameters())


def test_padding_is_never_selected_and_inference_replaces_objectness():
    torch.manual_seed(0)
    model = instantiate(_cfg(num_tokens=30).model).eval()
    model.return_visuals = True
    batch = [{k: v for k, v in b.items() if k != "instances"} for b in _batch()]
    seen = {}
    real = model.run_probe

    def spy(step):
        out = real(step)
        seen.update(step=step, out=out)
        return out

    model.run_probe = spy
    with torch.no_grad():
        out = model(batch)
    preds, (idx, refined, _) = seen["step"].preds, seen["out"]
    assert seen["step"].image_sizes.tolist() == [[96, 128], [64, 64]]
    centers = preds.anchor_centers
    # image 1 is 64x64 inside a 96x128 batch: every selected cell centre lies inside it
    c1 = centers[idx[1]]
    assert (c1[:, 0] < 64).all() and (c1[:, 1] < 64).all()
    maps = out[1]["visuals"]  # per image, only when asked (return_visuals)
    after = maps.after
    assert torch.allclose(after[idx[1]], refined[1].sigmoid())
    rest = torch.ones_like(after, dtype=torch.bool)
    rest[idx[1]] = False
    assert torch.equal(after[rest], maps.before[rest])
    assert maps.image_size == (64, 64) and out[0]["visuals"].image_size == (96, 128)
    assert [m.shape for m in maps.level_maps("after")] == [torch.Size(s) for s in preds.level_sizes]
    assert len(out) == 2 and out[1]["instances"].image_size == (64, 64)
    model.return_visuals = False
    with torch.no_grad():
        assert all(set(o) == {"instances"} for o in model(batch))


def test_off_is_one_override_and_equals_yolox():
    cfg = _cfg()
    torch.manual_seed(0)
    with_probe = instantiate(cfg.model).eval()
    cfg.model.probe = None
    torch.manual_seed(0)
    plain = instantiate(cfg.model).eval()
    assert not any("probe" in n for n, _ in plain.named_parameters())
    # same weights but the probe's: without a probe the objectness is the head's
    plain.load_state_dict({k: v for k, v in with_probe.state_dict().items() if not k.startswith("probe.")})
    batch = [{k: v for k, v in b.items() if k != "instances"} for b in _batch()]
    plain.return_visuals = with_probe.return_visuals = True
    with torch.no_grad():
        a = plain(batch)
    assert all(torch.equal(o["visuals"].before, o["visuals"].after) for o in a)
    with torch.no_grad():
        c = with_probe(batch)
    assert any(not torch.equal(o["visuals"].before, o["visuals"].after) for o in c)
    with_probe.probe = None
    with torch.no_grad():
        b = with_probe(batch)
    for x, y in zip(a, b):
        assert torch.equal(x["instances"].scores, y["instances"].scores)


def test_probe_width_must_match_the_head():
    cfg = _cfg()
    cfg.model.probe.cls_dim = cfg.model.head.feat_channels + 1
    with pytest.raises(UserError, match=r"model\.probe: cls_dim/reg_dim .* model\.head\.feat_channels"):
        instantiate(cfg.model)


def test_tokens_only_inference_keeps_only_selected_tokens():
    torch.manual_seed(0)
    model = instantiate(_cfg(num_tokens=5, inference="tokens_only").model).eval()
    with torch.no_grad():
        model.probe.pred.bias.fill_(5.0)  # refined tokens score high
        model.test_score_thresh = 1e-4  # every refined token passes (prior cls ~0.01), nothing else
        out = model([{k: v for k, v in _batch()[0].items() if k != "instances"}])
    assert 0 < len(out[0]["instances"]) <= 5


def test_overflowing_boxes_are_dropped_at_inference():
    torch.manual_seed(0)
    cfg = _cfg()
    cfg.model.probe = None
    model = instantiate(cfg.model).eval()
    with torch.no_grad():
        model.head.reg_preds["p3"].bias[2:].fill_(200.0)  # exp(200) overflows in float32
        model.test_score_thresh = 0.0
        out = model([{k: v for k, v in _batch()[0].items() if k != "instances"}])
    boxes = out[0]["instances"].pred_boxes.tensor
    assert len(boxes) > 0 and torch.isfinite(boxes).all()


def test_synthetic_config_through_the_trainer(tmp_path, synthetic_dataset):
    """The synthetic Foreground Probing config end to end: its MosaicDataset loader, the
    no-aug tail (L1 switched on), multi-scale batches, EMA, then evaluation of the EMA model."""
    import json

    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.engine import default_argument_parser

    from sod2.config import get_config_file
    from sod2.engine.lazy_train import main

    name = "sod2_synthetic_val_first4"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("sod2_synthetic_val")[:4])
        MetadataCatalog.get(name).set(**{k: v for k, v in MetadataCatalog.get("sod2_synthetic_val").as_dict().items()
                                         if k != "name"})
    out = tmp_path / "run"
    args = default_argument_parser().parse_args([
        "--config-file", get_config_file("fgprobe/fgprobe_yolox_tiny_p2_synthetic.py"),
        "train.max_iter=4", "train.eval_period=4", "train.no_aug.start_iter=2", "train.multiscale.period=1",
        "lr_multiplier.total_iters=4", "lr_multiplier.warmup_iters=1", "lr_multiplier.no_aug_iters=1",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        f"dataloader.test.dataset.names={name}", "dataloader.test.num_workers=0", "train.log_period=1",
        "train.device=cpu", f"train.output_dir={out}"])
    main(args)
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    train_rows = [r for r in rows if "loss_ref" in r]
    assert [r["iteration"] for r in train_rows] == [0, 1, 2, 3]
    assert train_rows[0]["loss_l1"] == 0 and train_rows[-1]["loss_l1"] > 0  # the no-aug tail
    assert any("bbox/AP" in r for r in rows)
    ckpt = torch.load(out / "model_final.pth", weights_only=False)
    assert "ema" in ckpt and any(k.startswith("probe.") for k in ckpt["model"])
