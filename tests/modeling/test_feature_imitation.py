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
from sod2.modeling.roi_heads import ExemplarBank, Feat2Embed
from sod2.modeling.roi_heads.feature_imitation import augmented_boxes, instance_quality

REPO = Path(__file__).resolve().parents[2]


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
    from sod2.modeling.roi_heads import ExemplarBank
    bank = ExemplarBank(num_classes=3, capacity=4, channels=2, roi_size=1)
    r = comm.get_rank()
    for step in range(3):  # each process finds different exemplars, some of them none
        n = (r + step) % 3
        feats = torch.full((n, 2, 1, 1), float(10 * r + step))
        labels = torch.tensor([(r + step + i) % 3 for i in range(n)], dtype=torch.int64)
        bank.add_from_all_processes(feats, labels)
    torch.save({k: v for k, v in bank.state_dict().items()}, f"{out}/bank{r}.pt")
    # leave together and close gloo before exiting: a process that exits while its peer still
    # holds the group can abort in gloo's destructor ("terminate called without an active exception")
    comm.synchronize()
    torch.distributed.destroy_process_group()

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
    im = cfg.model.roi_heads.imitation
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
    from sod2.modeling.roi_heads import imitation_mlp_lr_factor

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
