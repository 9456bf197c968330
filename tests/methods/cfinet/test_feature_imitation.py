"""Feature imitation: instance quality, the contrastive loss, augmented views, the
exemplar bank (FIFO, checkpoints, 2 processes), and the ROI heads end to end."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer

from sod2.layers import supervised_contrastive_loss
from sod2.modeling.methods.cfinet import ExemplarBank, Feat2Embed
from sod2.modeling.methods.cfinet.feature_imitation import augmented_boxes, instance_quality

REPO = Path(__file__).resolve().parents[3]


def test_instance_quality_by_hand():
    # gt 0 (class 1): three predictions; gt 1 (class 0): one
    gt_index = torch.tensor([0, 0, 0, 1])
    gt_classes = torch.tensor([1, 1, 1, 0])
    probs = torch.tensor([[0.1, 0.8, 0.1],    # argmax 1 = c*: kept, 0.8 * 0.9
                          [0.2, 0.6, 0.2],    # kept, 0.6 * 0.5
                          [0.7, 0.2, 0.1],    # argmax 0 != c*: dropped by the paper's rule
                          [0.3, 0.3, 0.4]])   # argmax background: dropped
    iou = torch.tensor([0.9, 0.5, 0.8, 0.7])
    iq, count = instance_quality(gt_index, gt_classes, probs, iou, 2, rule="paper")
    assert iq.tolist() == pytest.approx([(0.8 * 0.9 + 0.6 * 0.5) / 2, 0.0])
    assert count.tolist() == [2, 0]
    # official rule: score on c* >= 0.05 -> all kept
    iq, count = instance_quality(gt_index, gt_classes, probs, iou, 2, rule="code")
    assert iq.tolist() == pytest.approx([(0.72 + 0.30 + 0.2 * 0.8) / 3, 0.3 * 0.7])
    assert count.tolist() == [3, 1]


def _naive_supcon(anchor, samples, positive, tau):
    """Eq. 5 of CFINet with plain Python loops."""
    denom = sum(math.exp(float(anchor @ s) / tau) for s in samples)
    pos = [s for s, p in zip(samples, positive) if p]
    if not pos:
        return 0.0
    return -sum(math.log(math.exp(float(anchor @ p) / tau) / denom) for p in pos) / len(pos)


def test_contrastive_loss_against_naive_loop():
    g = torch.Generator().manual_seed(0)
    G, S, D = 4, 9, 6
    a = torch.nn.functional.normalize(torch.randn(G, D, generator=g, dtype=torch.float64), dim=1)
    s = torch.nn.functional.normalize(torch.randn(G, S, D, generator=g, dtype=torch.float64), dim=2)
    pos = torch.rand(G, S, generator=g) < 0.4
    pos[3] = False  # an anchor without positives
    valid = torch.ones(G, S, dtype=torch.bool)
    valid[1, 6:] = False  # padding: anchor 1 has only 6 samples
    got = supervised_contrastive_loss(a, s, pos, 0.6, valid=valid)
    for j in range(G):
        n = int(valid[j].sum())
        expect = _naive_supcon(a[j], s[j, :n], pos[j, :n].tolist(), 0.6)
        assert got[j].item() == pytest.approx(expect, abs=1e-10)
    w = torch.tensor([0.5, 0.1, 0.05, 1.0], dtype=torch.float64)
    assert torch.allclose(supervised_contrastive_loss(a, s, pos, 0.6, weights=w, valid=valid), got * w)


def test_augmented_views_by_hand():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 30.0]])  # w 20, h 10
    v = augmented_boxes(boxes, (100, 100))
    assert v.shape == (1, 10, 4)
    # x shifts use the width, y shifts the height (the official code swaps them)
    assert v[0, 0].tolist() == [16.0, 20.0, 36.0, 30.0]   # +0.3 w
    assert v[0, 1].tolist() == [10.0, 23.0, 30.0, 33.0]   # +0.3 h
    assert v[0, 7].tolist() == [10.0, 15.0, 30.0, 25.0]   # -0.5 h
    assert v[0, 8].tolist() == pytest.approx([10.3, 20.15, 29.7, 29.85])  # x0.97
    clipped = augmented_boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), (8, 9))
    assert clipped[..., 0::2].max() <= 9 and clipped[..., 1::2].max() <= 8 and clipped.min() >= 0


def test_bank_fifo_and_checkpoint(tmp_path):
    bank = ExemplarBank(num_classes=2, capacity=3, channels=1, roi_size=1)
    feats = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1)
    bank.add(feats, torch.tensor([0, 0, 0, 0, 0]))
    assert bank.ordered(0).flatten().tolist() == [2.0, 3.0, 4.0]  # oldest dropped first
    bank.add(torch.tensor([[[[9.0]]]]), torch.tensor([1]))
    assert bank.bank_count.tolist() == [3, 1] and bank.ordered(1).flatten().tolist() == [9.0]
    assert all("bank" in k for k in bank.state_dict())
    DetectionCheckpointer(bank, str(tmp_path)).save("bank")
    fresh = ExemplarBank(num_classes=2, capacity=3, channels=1, roi_size=1)
    DetectionCheckpointer(fresh).load(str(tmp_path / "bank.pth"))
    assert fresh.ordered(0).flatten().tolist() == [2.0, 3.0, 4.0]
    fresh.add(torch.tensor([[[[7.0]]]]), torch.tensor([0]))  # continues after the restored pointer
    assert fresh.ordered(0).flatten().tolist() == [3.0, 4.0, 7.0]


def test_feat2embed_shapes():
    e = Feat2Embed(in_channels=32, hidden_dim=64, out_dim=16)
    v = e.compress(torch.randn(5, 32, 7, 7))
    assert v.shape == (5, 32)
    z = e.project(v)
    assert z.shape == (5, 16) and torch.allclose(z.norm(dim=1), torch.ones(5))


_BANK_WORKER = r'''
import sys, torch
sys.path.insert(0, sys.argv[1])
from detectron2.engine import launch
from detectron2.utils import comm

def work(out):
    from sod2.modeling.methods.cfinet import ExemplarBank
    bank = ExemplarBank(num_classes=3, capacity=4, channels=2, roi_size=1)
    r = comm.get_rank()
    for step in range(3):  # each process finds different exemplars, some of them none
        n = (r + step) % 3
        feats = torch.full((n, 2, 1, 1), float(10 * r + step))
        labels = torch.tensor([(r + step + i) % 3 for i in range(n)], dtype=torch.int64)
        bank.add_from_all_processes(feats, labels)
    torch.save({k: v for k, v in bank.state_dict().items()}, f"{out}/bank{r}.pt")
    from tests.distributed import leave
    leave()  # together, without gloo's destructors (see tests/distributed.py)

if __name__ == "__main__":
    launch(work, 2, dist_url="auto", args=(sys.argv[2],))
'''


def test_banks_identical_across_two_processes(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(_BANK_WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(REPO), str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    b0, b1 = torch.load(tmp_path / "bank0.pt"), torch.load(tmp_path / "bank1.pt")
    assert set(b0) == set(b1)
    for k in b0:
        assert torch.equal(b0[k], b1[k]), k
    # both processes' exemplars are in (values 0..2 from rank 0, 10..12 from rank 1)
    vals = set(b0["bank_feats"][b0["bank_feats"] != 0].tolist())
    assert any(v >= 10 for v in vals) and any(0 < v < 10 for v in vals)
    assert int(b0["bank_count"].sum()) > 0


def test_cfinet_end_to_end_on_synthetic(tmp_path, synthetic_dataset):
    """CRPN + feature imitation through the synthetic config: the bank fills, the imitation
    loss becomes active, images without objects train, the bank survives a checkpoint,
    inference adds nothing from the branch."""
    from detectron2.config import instantiate
    from detectron2.utils.events import EventStorage

    from sod2.config import get_config

    cfg = get_config("cfinet/cfinet_R18s_fpn_synthetic.py")
    im = cfg.model.cfinet.imitation
    # every instance is "high quality" at once (the official rule keeps the untrained
    # classifier's predictions, whose argmax is background)
    im.hq_thresh, im.min_predictions, im.quality_rule = 0.0, 1, "code"
    im.bank.capacity = 8
    cfg.dataloader.train.total_batch_size = 2
    cfg.dataloader.train.num_workers = 0
    model = instantiate(cfg.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    loader = iter(instantiate(cfg.dataloader.train))
    with EventStorage(0) as storage:
        for step in range(3):
            batch = next(loader)
            if step == 1:
                batch[0]["instances"] = batch[0]["instances"][:0]  # an image without objects
            losses = model(batch)
            assert {"loss_con", "loss_crpn_reg_s1", "loss_crpn_cls", "loss_crpn_reg_s2"} <= set(losses)
            assert all(torch.isfinite(v) for v in losses.values())
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            storage.step()
        assert losses["loss_con"].item() > 0
        hist = storage.histories()
        assert "imitation/hq_found" in hist and "imitation/bank_fill/0" in hist
    bank = model.roi_heads.imitation.bank
    assert int(bank.bank_count.sum()) > 0
    assert model.roi_heads.imitation.embed.mlp[0].weight.grad is not None
    DetectionCheckpointer(model, str(tmp_path)).save("m")
    fresh = instantiate(cfg.model)
    DetectionCheckpointer(fresh).load(str(tmp_path / "m.pth"))
    assert torch.equal(fresh.roi_heads.imitation.bank.bank_feats, bank.bank_feats)
    assert torch.equal(fresh.roi_heads.imitation.bank.bank_count, bank.bank_count)
    fresh.eval()
    with torch.no_grad():
        out = fresh([{"image": batch[1]["image"], "height": 256, "width": 256}])
    assert out[0]["instances"].has("pred_boxes")


def test_mlp_init_options_and_lr_factor():
    from sod2.modeling.methods.cfinet import imitation_mlp_lr_factor

    default = Feat2Embed(in_channels=32, hidden_dim=64, out_dim=16)
    official = Feat2Embed(in_channels=32, hidden_dim=64, out_dim=16, mlp_init="official")
    assert default.mlp[-1].bias is None and official.mlp[-1].bias is not None
    v = torch.randn(8, 32)
    # the official init makes the pre-normalisation embedding ~1e-3 long (what lets its last
    # bias take over); the default init keeps it O(0.1)
    assert official.mlp(v).norm(dim=1).max() < 0.01 < default.mlp(v).norm(dim=1).min()
    with pytest.raises(ValueError):
        Feat2Embed(mlp_init="other")
    assert imitation_mlp_lr_factor("roi_heads.imitation.embed.mlp.0.weight") == 0.05
    assert imitation_mlp_lr_factor("roi_heads.imitation.embed.convs.0.weight") == 1.0
    assert imitation_mlp_lr_factor("backbone.bottom_up.stem.conv1.weight", factor=0.1) == 1.0


def _marked(marker, C=4, S=7):
    f = torch.zeros(C, S, S)
    f[1, 0, 0] = marker
    return f


def test_imitation_assembles_the_exact_positives_and_negatives():
    """A hand-built batch through FeatureImitation.forward: the high-quality gt imitates its
    own 10 views; the others imitate their class's exemplars AS THEY WERE before the
    iteration (not the new exemplar of the same class); negatives are the background RoIs
    plus the OTHER classes' exemplars (never the anchor's own class, never foreground RoIs)."""
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from sod2.modeling.methods.cfinet import FeatureImitation
    from sod2.modeling.methods.cfinet.feature_imitation import QualityEvidence

    torch.manual_seed(0)
    K = 3
    bank = ExemplarBank(num_classes=K, capacity=4, channels=4, roi_size=7)
    for c, markers in ((0, [100, 101]), (1, [110]), (2, [120, 121, 122])):
        bank.add(torch.stack([_marked(m) for m in markers]), torch.full((len(markers),), c))
    im = FeatureImitation(K, Feat2Embed(in_channels=4, roi_size=7, hidden_dim=8, out_dim=4, num_groups=1), bank)

    gt_boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 40.0, 50.0, 56.0], [5.0, 40.0, 20.0, 60.0]])
    targets = [Instances((64, 64), gt_boxes=Boxes(gt_boxes), gt_classes=torch.tensor([0, 0, 1]))]
    # sampled RoIs: the 3 gt boxes (markers 1-3), 2 foreground RoIs of gt 2 (11, 12), 3 background (21-23)
    markers = [1, 2, 3, 11, 12, 21, 22, 23]
    prop = Instances((64, 64), proposal_boxes=Boxes(torch.zeros(8, 4)),
                     gt_classes=torch.tensor([0, 0, 1, 1, 1, K, K, K]),
                     gt_index=torch.tensor([0, 1, 2, 2, 2, 0, 0, 0]),
                     from_gt=torch.tensor([True, True, True, False, False, False, False, False]))
    roi_feats = torch.stack([_marked(m) for m in markers]).requires_grad_()

    def pool(features, boxes):  # encodes each box in the feature: views are recognisable
        b = torch.cat([x.tensor for x in boxes])
        out = torch.zeros(len(b), 4, 7, 7)
        out[:, 0, 0, :4] = b
        out[:, 1, 0, 0] = -1
        return out

    # gt 0: 8 predictions of IQ 0.81 (high quality); gt 1: 8 of IQ 0.30; gt 2: 3 of IQ 0.81 (< 8)
    probs = torch.tensor([[0.9, 0.05, 0.03, 0.02]] * 16 + [[0.05, 0.9, 0.03, 0.02]] * 3)
    iou = torch.tensor([0.9] * 8 + [1 / 3] * 8 + [0.9] * 3)
    evidence = [QualityEvidence(torch.tensor([0] * 8 + [1] * 8 + [2] * 3), torch.tensor([0] * 16 + [1] * 3),
                                probs, iou)]
    seen = {}
    assemble = im.assemble_rows

    def spy(table, batch, iq, hq):
        rows = assemble(table, batch, iq, hq)
        seen.update(table=table, rows=rows, hq=hq.tolist())
        return rows

    im.assemble_rows = spy
    with EventStorage(0):
        losses = im(pool, [], [prop], targets, roi_feats, evidence)
    assert torch.isfinite(losses["loss_con"]) and losses["loss_con"].item() > 0
    assert seen["hq"] == [True, False, False]
    table, rows = seen["table"], seen["rows"]

    def content(idx):
        out = []
        for i in idx.tolist():
            f = table.feats[i]
            out.append(tuple(f[0, 0, :4].tolist()) if f[1, 0, 0] == -1 else int(f[1, 0, 0]))
        return out

    got = {}
    for j in range(len(rows.anchor)):
        n = int(rows.valid[j].sum())
        sm, pos = rows.samples[j, :n], rows.positive[j, :n]
        got[int(rows.anchor[j])] = (sorted(content(sm[pos]), key=str), sorted(content(sm[~pos]), key=str))
    x0, y0, x1, y1 = gt_boxes[0].tolist()
    w, h = x1 - x0, y1 - y0
    views = [(x0 + dx, y0 + dy, x1 + dx, y1 + dy) for r in (0.3, 0.5)
             for dx, dy in ((r * w, 0), (0, r * h), (-r * w, 0), (0, -r * h))]
    views += [(20 - 10 * s, 20 - 10 * s, 20 + 10 * s, 20 + 10 * s) for s in (0.97, 1.03)]
    assert len(got[0][0]) == 10
    assert all(v == pytest.approx(e) for v, e in zip(got[0][0], sorted(views, key=str)))
    assert got[0][1] == sorted([21, 22, 23, 110, 120, 121, 122], key=str)
    assert got[1] == (sorted([100, 101], key=str), sorted([21, 22, 23, 110, 120, 121, 122], key=str))
    assert got[2] == ([110], sorted([21, 22, 23, 100, 101, 120, 121, 122], key=str))
    # the bank grew afterwards with gt 0's own feature (marker 1)
    assert [int(f[1, 0, 0]) for f in bank.ordered(0)] == [100, 101, 1]


@pytest.mark.parametrize("source", ["all", "sampled"])
def test_instance_quality_sees_every_positive_proposal(source):
    """Paper default: IQ from EVERY proposal that matches a ground truth (here 400, in a
    dense image where sampling keeps at most 128 positives); the official code's
    ``quality_proposals="sampled"``: only the sampled foreground RoIs, without the gt boxes."""
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from sod2.config import get_config

    cfg = get_config("cfinet/cfinet_R18s_fpn_synthetic.py")
    cfg.model.cfinet.imitation.quality_proposals = source
    heads = instantiate(cfg.model).roi_heads.train()
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[20.0 + 24 * i, 20.0, 36.0 + 24 * i, 36.0] for i in range(8)])
    jitter = (torch.rand(400, 4, generator=g) - 0.5) * 2  # +-1 px: every proposal IoU >= 0.5
    props = Instances((256, 256), proposal_boxes=Boxes(gt.repeat(50, 1) + jitter),
                      objectness_logits=torch.zeros(400))
    targets = [Instances((256, 256), gt_boxes=Boxes(gt), gt_classes=torch.arange(8) % 3)]
    feats = {f"p{k}": torch.randn(1, 64, 256 // 2 ** k, 256 // 2 ** k, generator=g) for k in (2, 3, 4, 5)}
    seen = []
    select = heads.imitation.select_high_quality
    heads.imitation.select_high_quality = lambda ev, b: seen.append(ev) or select(ev, b)
    with EventStorage(0):
        _, losses = heads(None, feats, [props], targets)
    assert "loss_con" in losses
    ev = seen[0][0]
    if source == "all":
        assert len(ev.gt_index) == 400 and torch.bincount(ev.gt_index).tolist() == [50] * 8
    else:  # 512 x 0.25 sampled positives at most, the 8 gt boxes excluded
        assert 0 < len(ev.gt_index) <= 128
    assert ev.probs.shape == (len(ev.gt_index), 4) and ((ev.iou > 0.3) & (ev.iou <= 1)).all()
