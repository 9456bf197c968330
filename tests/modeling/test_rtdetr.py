"""RT-DETR's meta-architecture (sod2/modeling/meta_arch/rtdetr.py) and its configs: the
reference parameter counts of the five COCO models, the targets, the output sets handed to
the criterion, the top-K post-processing against a hand example and a naive loop, training
and inference through the real path (dataset dict -> the COCO config's mappers -> model)
with and without ground truth, Better Sampling leaving inference unchanged, non-square and
padded inputs, the multi-scale hook's batches, and 2-process DDP (gloo) where one process has
no ground truth, without ``find_unused_parameters``. Expected values are computed by hand or
by naive loops here."""
import copy
import json
import math
import multiprocessing as mp
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

from sod2.config import get_config
from sod2.engine.multiscale import resize_batch
from sod2.modeling.methods.better_sampling import BetterSampling, BetterSamplingCriterion, SampleReweighting
from sod2.modeling.meta_arch import RTDETR
from sod2.modeling.criterion import OutputSet
from sod2.modeling.transformer.rtdetr_decoder import DecoderLayerOutput, DecoderOutput, EncoderOutput

from ..distributed import free_port, leave
from ..modules import config_module

REPO = Path(__file__).resolve().parents[2]
REF_KEYS = REPO / "tests" / "fixtures" / "reference-keys"
# sod2 variant name -> reference JSON
VARIANTS = {"r18": "r18vd", "r34": "r34vd", "r50": "r50vd", "r50_m": "r50vd_m", "r101": "r101vd"}
# the reference freezes the deep stem of R50/R101 (PResNet freeze_at=0): its three 3x3 convs
# 3->32, 32->32, 32->64 have no bias, and their (frozen) BatchNorms hold buffers only
FROZEN_STEM_PARAMS = 9 * (3 * 32 + 32 * 32 + 32 * 64)
NUM_CLASSES = 3


def _model_config_module():
    """configs/common/models/rtdetr.py as a module (its helper functions)."""
    return config_module("common/models/rtdetr.py")


MODELS = _model_config_module()


def tiny_config(num_layers=3, eval_size=None):
    """The R18 model config, narrowed so that a CPU step takes a fraction of a second: 32
    channels after the backbone, 2 heads, 2 points, 20 queries, 12 denoising queries."""
    cfg = copy.deepcopy(MODELS.model)
    MODELS.rtdetr_depth(cfg, "r18")
    MODELS.rtdetr_eval_size(cfg, eval_size)
    cfg.num_classes = NUM_CLASSES
    cfg.encoder.hidden_dim, cfg.encoder.dim_feedforward, cfg.encoder.nhead = 32, 64, 2
    dec = cfg.decoder
    dec.in_channels, dec.hidden_dim, dec.num_heads, dec.dim_feedforward = [32] * 3, 32, 2, 64
    dec.num_layers, dec.num_points = num_layers, 2
    dec.query_selection.num_queries = 20
    cfg.denoising.num_denoising = 12
    cfg.num_top_queries = 25
    return cfg


def tiny_model(seed=0, **kwargs):
    torch.manual_seed(seed)
    return instantiate(tiny_config(**kwargs))


def random_inputs(sizes, num_gt, seed=0):
    """Detectron2 inputs with uint8 images of the given (h, w) and random boxes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for (h, w), k in zip(sizes, num_gt):
        xy = torch.rand(k, 2, generator=g) * (min(h, w) - 30)
        wh = 5 + torch.rand(k, 2, generator=g) * 20
        out.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                    "instances": Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                                           gt_classes=torch.randint(0, NUM_CLASSES, (k,), generator=g))})
    return out


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


# ------------------------------------------------------------ structure
def test_registered():
    assert META_ARCH_REGISTRY.get("RTDETR") is RTDETR


@pytest.mark.realdata
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_reference_parameter_counts(variant):
    """The whole model has the reference's parameters (its JSON ``params`` counts every
    ``nn.Parameter``, the frozen stem included); the trainable ones are those minus the
    frozen stem for R50/R101 (R18/R34 freeze nothing)."""
    cfg = copy.deepcopy(MODELS.model)
    MODELS.rtdetr_depth(cfg, variant)
    with torch.device("meta"):
        model = instantiate(cfg)
    ref = json.loads((REF_KEYS / f"rtdetr_{VARIANTS[variant]}.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if variant in ("r18", "r34"):
        assert not frozen and trainable == ref["params"]
    else:
        assert frozen == {f"backbone.stem.conv1_{i}.weight" for i in (1, 2, 3)}
        assert trainable == ref["params"] - FROZEN_STEM_PARAMS
    layers = {"r18": 3, "r34": 4}.get(variant, 6)
    assert len(model.decoder.layers) == layers
    assert model.decoder.eval_idx == (2 if variant == "r50_m" else layers - 1)


def test_rtdetr_depth_is_idempotent_and_checks_names():
    cfg = copy.deepcopy(MODELS.model)
    MODELS.rtdetr_depth(cfg, "r101")
    MODELS.rtdetr_depth(cfg, 50)
    assert cfg == MODELS.model  # every value the variants differ in is set
    with pytest.raises(ValueError, match="unknown RT-DETR variant"):
        MODELS.rtdetr_depth(cfg, "r152")
    MODELS.rtdetr_norm(cfg, "SyncBN")
    assert cfg.backbone.norm == "FrozenBN" and cfg.encoder.norm == cfg.decoder.norm == "SyncBN"


# ------------------------------------------------------------ pieces
def test_prepare_targets_by_hand():
    model = tiny_model()
    inst = Instances((40, 60), gt_boxes=Boxes(torch.tensor([
        [10.0, 4.0, 30.0, 24.0],    # kept
        [-5.0, 0.0, 20.0, 50.0],    # clipped to (0, 0, 20, 40)
        [5.0, 5.0, 5.0, 10.0],      # no width: dropped
        [1.0, 1.0, 9.0, 9.0],       # class -1 (an ignore region): dropped
        [70.0, 10.0, 80.0, 20.0]])),  # outside the image: empty after clipping, dropped
        gt_classes=torch.tensor([1, 2, 0, -1, 1]))
    t = model.prepare_targets([inst], [(40, 60)], (64, 96))[0]
    assert t["labels"].tolist() == [1, 2] and t["labels"].dtype == torch.int64
    expected = [[20 / 96, 14 / 64, 20 / 96, 20 / 64], [10 / 96, 20 / 64, 20 / 96, 40 / 64]]
    assert torch.allclose(t["boxes"], torch.tensor(expected), atol=1e-7)
    empty = Instances((40, 60), gt_boxes=Boxes(torch.zeros(0, 4)), gt_classes=torch.zeros(0, dtype=torch.int64))
    t = model.prepare_targets([empty], [(40, 60)], (64, 64))[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)


def _fake_layer(n, i):
    """A decoder layer's output with N queries (every optional field filled) whose values
    encode (layer, query)."""
    q = torch.arange(n, dtype=torch.float32).view(1, n, 1) + 100 * i
    return DecoderLayerOutput(
        logits=q.expand(2, n, 3).clone(), boxes=q.expand(2, n, 4).clone(), layer_index=i,
        hidden=q.expand(2, n, 5).clone(), box_hidden=q.expand(2, n, 5).clone(), ref_boxes=q.expand(2, n, 4).clone(),
        offsets=q.view(1, n, 1, 1, 1, 1).expand(2, n, 2, 3, 2, 2), attention=q.view(1, n, 1, 1, 1).expand(2, n, 2, 3, 2))


PER_QUERY = ("logits", "boxes", "hidden", "box_hidden", "ref_boxes", "offsets", "attention")


def test_loss_sets_split_denoising_and_names():
    nd, q = 4, 6
    out = DecoderOutput(layers=[_fake_layer(nd + q, i) for i in range(3)],
                        encoder=EncoderOutput(logits=torch.zeros(2, q, 3), boxes=torch.zeros(2, q, 4)), num_denoising=nd)
    sets = RTDETR.loss_sets(out)
    assert all(isinstance(s, OutputSet) for s in sets)
    assert [s.name for s in sets] == ["", "aux_0", "aux_1", "enc", "dn_0", "dn_1", "dn_2"]
    assert [s.denoising for s in sets] == [False] * 4 + [True] * 3
    by_name = {s.name: s.output for s in sets}
    for name, i in (("", 2), ("aux_0", 0), ("aux_1", 1)):
        s = by_name[name]
        assert s.layer_index == i
        for key in PER_QUERY:
            v = getattr(s, key)
            assert v.shape[1] == q and v[0, :, ...].flatten(1)[:, 0].tolist() == \
                [100.0 * i + nd + j for j in range(q)], (name, key)
        dn = by_name[f"dn_{i}"]
        assert dn.layer_index == i
        for key in PER_QUERY:
            v = getattr(dn, key)
            assert v.shape[1] == nd and v[1].flatten(1)[:, 0].tolist() == \
                [100.0 * i + j for j in range(nd)], (name, key)
    assert isinstance(by_name["enc"], EncoderOutput) and by_name["enc"].boxes.shape == (2, q, 4)
    # without denoising queries: no dn sets, nothing cut; fields the decoder did not fill stay None
    bare = [DecoderLayerOutput(logits=torch.zeros(2, q, 3), boxes=torch.zeros(2, q, 4), layer_index=i)
            for i in range(2)]
    out = DecoderOutput(layers=bare, encoder=EncoderOutput(logits=torch.zeros(2, q, 3), boxes=torch.zeros(2, q, 4)),
                        num_denoising=0)
    sets = RTDETR.loss_sets(out)
    assert [s.name for s in sets] == ["", "aux_0", "enc"] and sets[0].output.boxes.shape[1] == q
    assert sets[0].output.hidden is None and sets[0].output.offsets is None


def test_topk_postprocess_hand_example():
    model = tiny_model()
    model.num_top_queries = 4
    # Q = 3 queries x C = 2 classes; logit order: (q1, c1) 3.0 > (q0, c0) 2.0 > (q2, c1) 1.0
    # > (q1, c0) 0.5 > (q0, c1) -1.0 > (q2, c0) -2.0
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0], [-2.0, 1.0]]])
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.1], [0.9, 0.1, 0.4, 0.4]]])
    # padded batch 64 x 96 (h, w), this image 64 x 80, reported at 128 x 160: a normalised x
    # maps to x * 96 input pixels, then * 160 / 80
    sx, sy = 96 * 160 / 80, 64 * 128 / 64
    inst = model.inference(logits, boxes, (64, 96), [(64, 80)], [(128, 160)])[0]
    assert inst.image_size == (128, 160)
    assert inst.pred_classes.tolist() == [1, 0, 1, 0]
    assert inst.scores.tolist() == pytest.approx([_sigmoid(v) for v in (3.0, 2.0, 1.0, 0.5)], rel=1e-6)
    expected = [[0.0, 0.70 * sy, 0.5 * sx, 0.80 * sy],   # q1: (0.25 +- 0.25, 0.75 +- 0.05)
                [0.4 * sx, 0.3 * sy, 0.6 * sx, 0.7 * sy],   # q0
                [0.7 * sx, -0.1 * sy, 1.1 * sx, 0.3 * sy],  # q2 reaches outside: not clipped
                [0.0, 0.70 * sy, 0.5 * sx, 0.80 * sy]]      # q1 again, its other class
    assert torch.allclose(inst.pred_boxes.tensor, torch.tensor(expected), atol=1e-4)
    model.clip_boxes = True
    clipped = model.inference(logits, boxes, (64, 96), [(64, 80)], [(128, 160)])[0].pred_boxes.tensor
    assert clipped[2].tolist() == pytest.approx([0.7 * sx, 0.0, 160.0, 0.3 * sy], abs=1e-4)
    # K is at most Q x C; every pair then appears once, sorted
    model.num_top_queries = 300
    inst = model.inference(logits, boxes, (64, 96), [(64, 80)], [(64, 80)])[0]
    assert len(inst) == 6 and inst.scores.tolist() == sorted(inst.scores.tolist(), reverse=True)
    every = sorted(_sigmoid(logits[0, q, c].item()) for q in range(3) for c in range(2))
    assert sorted(inst.scores.tolist()) == pytest.approx(every, rel=1e-6)
    assert inst.pred_classes.tolist() == [1, 0, 1, 0, 1, 0]


def test_preprocess_rgb_bgr_float_and_padding():
    model = tiny_model()
    img = torch.randint(0, 256, (3, 40, 70), dtype=torch.uint8)
    images = model.preprocess_image([{"image": img}])
    assert images.tensor.shape == (1, 3, 64, 96) and images.image_sizes == [(40, 70)]
    assert torch.allclose(images.tensor[0, :, :40, :70], img.float() / 255.0)
    assert images.tensor[0, :, 40:].abs().sum() == 0 and images.tensor[0, :, :, 70:].abs().sum() == 0
    # float 0-255 (the multi-scale hook's output) is the same input
    assert torch.equal(model.preprocess_image([{"image": img.float()}]).tensor, images.tensor)
    model.input_format = "BGR"  # a BGR mapper: the model still sees RGB
    assert torch.equal(model.preprocess_image([{"image": img.flip(0)}]).tensor, images.tensor)
    with pytest.raises(ValueError, match="input_format"):
        RTDETR(backbone=None, encoder=None, decoder=None, criterion=None, num_classes=3, input_format="YUV")


# ------------------------------------------------------------ real path
def _record(tmp_path, name, width, height, objects, ignored=()):
    """A sod2 dataset dict with an image on disk; ``objects`` / ``ignored``: XYWH boxes and
    classes; ignored ones become an ``ignore: 1`` region and a crowd box."""
    path = tmp_path / f"{name}.png"
    rng = np.random.default_rng(len(name))
    cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    annos = [{"bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": c} for b, c in objects]
    for k, b in enumerate(ignored):
        annos.append({"bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": -1, "ignore": 1} if k % 2 == 0
                     else {"bbox": list(b), "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0, "iscrowd": 1})
    return {"file_name": str(path), "height": height, "width": width, "image_id": name, "annotations": annos}


def _coco_mappers(train_size=128):
    """The R18 COCO config's train and test mappers; the train resize made small for speed."""
    cfg = get_config("rtdetr/rtdetr_r18vd_coco.py")
    train_aug = cfg.dataloader.train.mapper.augmentations
    assert train_aug[-1].shape == [640, 640]
    train_aug[-1].shape = [train_size, train_size]
    return instantiate(cfg.dataloader.train.mapper), instantiate(cfg.dataloader.test.mapper)


class _Spy(torch.nn.Module):
    """Wraps the criterion and records the targets and output sets it receives."""

    def __init__(self, criterion):
        super().__init__()
        self.criterion, self.calls = criterion, []

    @property
    def required_outputs(self):
        return self.criterion.required_outputs

    def forward(self, outputs, targets, denoising=None):
        self.calls.append((outputs, targets, denoising))
        return self.criterion(outputs, targets, denoising)


def test_trains_through_the_config_mapper_with_and_without_gt(tmp_path):
    np.random.seed(3)
    train_mapper, _ = _coco_mappers()
    objects = [((20, 30, 90, 70), 1), ((120, 40, 60, 80), 2), ((60, 100, 50, 40), 0)]
    ignored = [(5, 5, 15, 15), (170, 130, 20, 20)]
    with_gt = [train_mapper(_record(tmp_path, f"a{i}", 200, 160, objects, ignored)) for i in range(2)]
    no_gt = [train_mapper(_record(tmp_path, f"b{i}", 200, 160, [], ignored)) for i in range(2)]
    assert all(tuple(d["image"].shape) == (3, 128, 128) for d in with_gt + no_gt)
    assert all(len(d["instances"]) > 0 for d in with_gt) and all(len(d["instances"]) == 0 for d in no_gt)
    model = tiny_model(eval_size=(640, 640))
    model.train()
    spy = _Spy(model.criterion)
    model.criterion = spy
    names = ["", "aux_0", "aux_1", "enc"]
    for batch, dn in ((with_gt, True), (no_gt, False)):
        model.zero_grad()
        with EventStorage(0):
            losses = model(batch)
        outputs, targets, denoising = spy.calls[-1]
        # the targets are exactly the mapped objects (ignore regions and crowd boxes are not)
        for t, d in zip(targets, batch):
            b = d["instances"].gt_boxes.tensor
            assert t["labels"].tolist() == d["instances"].gt_classes.tolist()
            cxcywh = torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1) / 128
            assert torch.allclose(t["boxes"], cxcywh, atol=1e-6)
        sets = names + ([f"dn_{i}" for i in range(3)] if dn else [])
        assert [o.name for o in outputs] == sets and (denoising is not None) == dn
        assert set(losses) == {f"{k}_{s}" if s else k for k in ("loss_vfl", "loss_bbox", "loss_giou") for s in sets}
        assert all(torch.isfinite(v) for v in losses.values())
        if dn:
            assert losses["loss_giou"].item() > 0 and losses["loss_bbox_dn_0"].item() > 0
        else:
            assert losses["loss_giou"].item() == 0 and losses["loss_bbox_enc"].item() == 0
        sum(losses.values()).backward()
        grad = model.denoising.class_embed.weight.grad
        assert grad is not None  # used (through the zero-weighted term when no queries were built)
        assert (grad.abs().sum().item() > 0) == dn
        assert model.decoder.query_selection.enc_score_head.bias.grad.abs().sum() > 0
        assert model.backbone.stem.conv1_1.weight.grad is not None
    # the multi-scale hook's batches (float images of another size, boxes rescaled): the
    # normalised targets do not change
    resized = resize_batch(with_gt, (96, 96), (128, 128), mode="nearest")
    with EventStorage(0):
        model(resized)
    for before, after in zip(spy.calls[0][1], spy.calls[-1][1]):
        assert torch.allclose(before["boxes"], after["boxes"], atol=1e-6)
        assert torch.equal(before["labels"], after["labels"])


def test_inference_through_the_config_mapper_matches_a_naive_topk(tmp_path):
    """640x640 test resize (aspect not kept), no denoising, the eval layer, top-K of all
    (query, class) pairs by a naive sort, boxes scaled to the ORIGINAL non-square image."""
    _, test_mapper = _coco_mappers()
    record = _record(tmp_path, "t", 150, 100, [((10, 10, 30, 20), 1)])
    inputs = [test_mapper(record)]
    assert tuple(inputs[0]["image"].shape) == (3, 640, 640) and "instances" not in inputs[0]
    model = tiny_model(eval_size=(640, 640))
    model.eval()
    model.denoising.forward = None  # inference never builds denoising queries
    with torch.no_grad():
        inst = model(inputs)[0]["instances"]
        images = model.preprocess_image(inputs)
        layer = model.decoder(model.encoder(model.backbone(images.tensor))).layers
    assert len(layer) == 1 and layer[0].layer_index == 2
    logits, boxes = layer[0].logits[0], layer[0].boxes[0]
    pairs = sorted(((_sigmoid(logits[q, c].item()), q, c) for q in range(logits.shape[0])
                    for c in range(NUM_CLASSES)), reverse=True)[:25]
    assert inst.image_size == (100, 150) and len(inst) == 25
    assert inst.scores.tolist() == pytest.approx([p[0] for p in pairs], rel=1e-5)
    assert inst.pred_classes.tolist() == [p[2] for p in pairs]
    for k, (_, q, _) in enumerate(pairs):
        cx, cy, w, h = boxes[q].tolist()
        assert inst.pred_boxes.tensor[k].tolist() == pytest.approx(
            [(cx - w / 2) * 150, (cy - h / 2) * 100, (cx + w / 2) * 150, (cy + h / 2) * 100], abs=1e-3)


# ---------------------------------------------------------- better sampling
# ------------------------------------------------------------------- DDP
def _ddp_worker(rank, port, queue):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
        cfg = tiny_config()
        # Better Sampling's SR (needs positives) injected through the criterion
        cfg.criterion._target_ = BetterSamplingCriterion
        cfg.criterion.better_sampling = L(BetterSampling)(reweighting=L(SampleReweighting)(hidden_dim=32))
        torch.manual_seed(rank)  # different initial weights: DDP broadcasts rank 0's
        model = DistributedDataParallel(instantiate(cfg), find_unused_parameters=False)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        model.train()
        with EventStorage(0):
            for it in range(3):
                # ground truth on one process only (alternating), none on either at it == 2
                has_gt = it < 2 and (rank + it) % 2 == 0
                losses = model(random_inputs([(96, 96), (96, 96)], (2, 1) if has_gt else (0, 0), seed=10 * it + rank))
                opt.zero_grad()
                sum(losses.values()).backward()
                opt.step()
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()])
        gathered = [torch.zeros_like(checksum) for _ in range(2)]
        dist.all_gather(gathered, checksum)
        queue.put((rank, bool(torch.equal(gathered[0], gathered[1])), None))
    except Exception as e:  # reported to the test
        queue.put((rank, False, repr(e)))
        return
    leave(queue)


def test_ddp_two_processes_one_without_gt():
    """DDP with ``find_unused_parameters=False``: a process whose batch has no ground truth
    builds no denoising queries; the zero-weighted term keeps its embedding in the graph, so
    the gradients are reduced and the replicas stay identical (without it the reduction of
    that process would never complete)."""
    ctx = mp.get_context("fork")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    try:
        got = dict((r, (same, err)) for r, same, err in (queue.get(timeout=180) for _ in procs))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    assert got[0] == (True, None) and got[1] == (True, None), got


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_coco_configs(variant, tmp_path):
    cfg = get_config(f"rtdetr/rtdetr_{VARIANTS[variant]}_coco.py")
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    m = cfg.model
    depth, _, backbone_norm, enc_dim, enc_ffn, expansion, layers, eval_idx = MODELS.RTDETR_VARIANTS[variant]
    assert (m.backbone.depth, m.encoder.hidden_dim, m.encoder.dim_feedforward, m.encoder.expansion) == \
        (depth, enc_dim, enc_ffn, expansion)
    assert (m.decoder.num_layers, m.decoder.eval_idx, m.decoder.hidden_dim) == (layers, eval_idx, 256)
    assert m.decoder.in_channels == [enc_dim] * 3
    assert m.backbone.norm == ("FrozenBN" if backbone_norm == "FrozenBN" else "SyncBN")
    assert m.encoder.norm == m.decoder.norm == "SyncBN"
    assert m.num_classes == 80 and m.num_top_queries == 300 and m.input_format == "RGB"
    assert m.decoder.query_selection.num_queries == 300 and m.denoising.num_denoising == 100
    assert m.encoder.eval_spatial_size == [640, 640] and m.decoder.query_selection.eval_spatial_size == [640, 640]
    assert m.criterion.weight_dict == {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    assert (m.criterion.alpha, m.criterion.gamma) == (0.75, 2.0)
    assert cfg.dataloader.train.mapper.image_format == cfg.dataloader.test.mapper.image_format == "RGB"
    test_aug = cfg.dataloader.test.mapper.augmentations
    assert len(test_aug) == 1 and test_aug[0].shape == [640, 640]
    assert cfg.dataloader.train.total_batch_size == 16 and cfg.dataloader.train.dataset.filter_empty is False
    assert cfg.dataloader.train.dataset.names == "coco_2017_train"
    assert cfg.dataloader.test.dataset.names == "coco_2017_val"
    assert cfg.train.max_iter == 72 * (118287 // 16) and cfg.train.ddp.find_unused_parameters is False
    assert cfg.optimizer.lr == 1e-4 and cfg.optimizer.weight_decay == 1e-4
    backbone_factor = 0.01 if variant == "r101" else 0.1
    assert cfg.optimizer.params.lr_factor_func.factors == {"backbone.": backbone_factor}
    assert (cfg.optimizer.params.weight_decay_norm is None) == (variant == "r101")
    assert cfg.train.init_checkpoint.startswith("./weights/")
