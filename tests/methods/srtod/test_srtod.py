"""SR-TOD: reconstruction sizes, the padded target, DGFE against a naive computation, the
learnable threshold, the hook as a whole, the hook in the feature-hook slot of Faster R-CNN,
RetinaNet and CFINet (its target, loss, visuals), and DDP training."""
import math

import pytest
import torch
from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from sod2.config import get_config
from sod2.modeling.methods.srtod import (DGFE, SRTOD, LearnableThreshold, ReconstructionHead,
                                         ReconstructionVisuals, difference_map, reconstruction_target)
from sod2.modeling.methods.srtod.reconstruction import nearest_resize


@pytest.mark.parametrize("level,stride", [(2, 4), (3, 8)])
def test_reconstruction_size(level, stride):
    head = ReconstructionHead(in_channels=32, num_up=level)
    out = head(torch.randn(2, 32, 40 // stride * 1, 48 // stride))
    assert out.shape == (2, 3, 40 // stride * stride, 48)
    assert out.min() >= 0 and out.max() <= 1
    # channels halve per Up: 32 -> 16 -> 8 (-> 4), then 3
    assert head.out.in_channels == 32 >> level
    # biases: transposed convs and the output conv only
    assert head.ups[0].tconv.bias is not None and head.ups[0].conv1.bias is None


def test_difference_map_and_nearest_resize():
    rec = torch.zeros(1, 3, 8, 8)
    tgt = torch.zeros(1, 3, 8, 8)
    tgt[0, 0, 4, 4] = 0.9  # one colour channel differs at (4, 4)
    d = difference_map(rec, tgt)
    assert d.shape == (1, 1, 8, 8) and d[0, 0, 4, 4].item() == pytest.approx(0.3)
    small = nearest_resize(d, (2, 2))
    assert small[0, 0, 1, 1].item() == pytest.approx(0.3)  # pixel (4, 4): top-left of its 4x4 cell
    d2 = d.clone()
    d2[0, 0, 4, 4], d2[0, 0, 5, 5] = 0, 0.3
    assert nearest_resize(d2, (2, 2))[0, 0, 1, 1].item() == 0  # (5, 5) is never read
    hf = difference_map(rec, tgt, "fft")
    assert hf.shape == d.shape and hf.sum() > 0


def test_dgfe_against_naive_loops():
    torch.manual_seed(0)
    C, H, W = 32, 3, 4
    dgfe = DGFE(channels=C, ratio=16)
    p = torch.randn(2, C, H, W)
    d = (torch.rand(2, 1, H, W) > 0.5).float()
    out = dgfe(p, d)
    l1, l2 = dgfe.mlp[0], dgfe.mlp[2]
    for n in range(2):
        avg = [sum(p[n, c, i, j].item() for i in range(H) for j in range(W)) / (H * W) for c in range(C)]
        mx = [max(p[n, c, i, j].item() for i in range(H) for j in range(W)) for c in range(C)]

        def mlp(v):
            h = [max(0.0, sum(l1.weight[k, c].item() * v[c] for c in range(C)) + l1.bias[k].item())
                 for k in range(l1.out_features)]
            return [sum(l2.weight[c, k].item() * h[k] for k in range(len(h))) + l2.bias[c].item() for c in range(C)]

        a, m = mlp(avg), mlp(mx)
        for c in range(C):
            w = 1 / (1 + torch.exp(-torch.tensor(a[c] + m[c]))).item()
            for i in range(H):
                for j in range(W):
                    expect = p[n, c, i, j].item() * w * (1 + d[n, 0, i, j].item())
                    assert out[n, c, i, j].item() == pytest.approx(expect, rel=1e-5, abs=1e-6)
    assert torch.allclose(DGFE(C, mode="multiply")(p, d), p * (1 + d))
    cat = DGFE(C, mode="concat")
    assert torch.allclose(cat(p, d), p * cat.channel_weights(p), atol=1e-6)  # starts as attention w/o D


def test_threshold_surrogate_gradient_against_hand_formula():
    """dL/dt = -scale * sum_p dL/dD_b(p) * s(p) * (1 - s(p)) / tau, s = sigmoid((D - t) / tau),
    computed here pixel by pixel; scale 1/sqrt(numel) by default, 1 for "none"."""
    torch.manual_seed(0)
    d = torch.rand(2, 1, 3, 5)
    w = torch.randn(2, 1, 3, 5)
    t0, tau = 0.4, 0.1
    expect = 0.0
    for v, g in zip(d.flatten().tolist(), w.flatten().tolist()):
        s = 1 / (1 + math.exp(-(v - t0) / tau))
        expect -= g * s * (1 - s) / tau
    for scale, factor in (("none", 1.0), ("sqrt", 1 / math.sqrt(30)), (0.25, 0.25)):
        t = LearnableThreshold(init=t0, tau=tau, grad_scale=scale)
        (t(d) * w).sum().backward()
        assert t.thresh.grad.item() == pytest.approx(expect * factor, rel=1e-5)
    with pytest.raises(ValueError, match="grad_scale"):
        LearnableThreshold(grad_scale="mean")


def test_threshold_forward_is_the_exact_step_and_learns():
    t = LearnableThreshold(init=0.5)
    d = torch.tensor([[[[0.2, 0.5, 0.8]]]])
    assert t(d).flatten().tolist() == [0.0, 0.5, 1.0]  # (sign + 1) / 2: 0.5 exactly at t
    # gradient: a loss that wants more pixels switched on pushes t down
    d = torch.rand(1, 1, 16, 16)
    t = LearnableThreshold(init=0.5, tau=0.05)
    opt = torch.optim.SGD(t.parameters(), lr=0.16)  # default grad scale 1/sqrt(256) = 1/16
    start = t.thresh.item()
    for _ in range(20):
        loss = -t(d).mean()
        opt.zero_grad()
        loss.backward()
        assert t.thresh.grad.item() > 0  # dL/dt > 0: lowering t lowers the loss
        opt.step()
    assert t.thresh.item() < start - 0.05
    # the official zero-gradient sign: no gradient, t stays
    z = LearnableThreshold(init=0.5, grad="zero")
    (-z(d).sum()).backward()
    assert z.thresh.grad is None or z.thresh.grad.item() == 0
    # by default the difference map gets no gradient; optionally it does
    dd = d.clone().requires_grad_()
    LearnableThreshold(0.5)(dd).sum().backward()
    assert dd.grad is None
    LearnableThreshold(0.5, grad_to_difference=True)(dd).sum().backward()
    assert dd.grad is not None and dd.grad.abs().sum() > 0


def _batch(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k, (h, w) in enumerate(sizes):
        n = 0 if k == 0 else 4
        xy = torch.rand(n, 2, generator=g) * (min(h, w) - 30)
        inst = Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + 6 + torch.rand(n, 2, generator=g) * 20], 1)),
                         gt_classes=torch.zeros(n, dtype=torch.int64))
        out.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                    "height": h, "width": w, "instances": inst})
    return out


@pytest.mark.parametrize("config", ["srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py",
                                    "srtod/retinanet_srtod_R18s_fpn_synthetic.py",
                                    "srtod/cfinet_srtod_R18s_fpn_synthetic.py"])
def test_hook_through_meta_architectures(config):
    cfg = get_config(config)
    cfg.model.feature_hook.return_visuals = True
    model = instantiate(cfg.model)
    hook = model.feature_hook
    assert isinstance(hook, SRTOD) and not any(n.startswith("backbone.fpn.") for n in model.state_dict())
    seen = {}
    real_forward = hook.forward

    def spy(features, inputs):
        seen["target"] = reconstruction_target(inputs)
        return real_forward(features, inputs)

    hook.forward = spy
    batch = _batch([(100, 120), (90, 64)])
    model.train()
    with EventStorage(0) as st:
        losses = model(batch)
        assert list(losses)[-1] == "loss_rec" and torch.isfinite(losses["loss_rec"])
        sum(losses.values()).backward()
        assert "srtod/threshold" in st.latest()
    # the target is the input as RGB / 255, zero-padded exactly like the batched input
    t = seen["target"]
    size_div = model.backbone.size_divisibility or 1
    assert t.shape[-2] % size_div == 0 and t.shape[-2] >= 100
    img = batch[1]["image"]
    assert torch.equal(t[1, :, :90, :64], img.flip(0).float() / 255)  # BGR input -> RGB
    assert (t[1, :, 90:, :] == 0).all() and (t[1, :, :, 64:] == 0).all()
    assert hook.threshold.thresh.grad is not None and hook.threshold.thresh.grad.abs() > 0
    assert hook.head.out.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model([{k: v for k, v in b.items() if k != "instances"} for b in batch])
    assert out[0]["instances"].has("pred_boxes")
    # the pictures come back with each image, at the padded input size of the batch
    for o in out:
        vis = o["visuals"]
        assert isinstance(vis, ReconstructionVisuals)
        assert vis.reconstruction.shape == t.shape[1:] and vis.binary_map.shape == (1,) + t.shape[2:]
        assert set(vis.binary_map.unique().tolist()) <= {0.0, 0.5, 1.0}
    # the detector without SR-TOD is one override away: the same class, no loss_rec, no visuals
    cfg.model.feature_hook = None
    plain = instantiate(cfg.model)
    assert type(plain) is type(model) and plain.feature_hook is None
    plain.train()
    with EventStorage(0):
        assert "loss_rec" not in plain(batch)


@pytest.mark.parametrize("num_up,reduce_to", [(2, None), (3, None), (2, 16)])
def test_sampled_reconstruction_equals_full(num_up, reduce_to):
    torch.manual_seed(0)
    head = ReconstructionHead(32, num_up, reduce_to=reduce_to)
    for h, w in ((10, 12), (7, 9)):
        x = torch.randn(2, 32, h, w)
        with torch.no_grad():
            full = head(x)[..., ::head.stride, ::head.stride]
            assert torch.allclose(head.forward_sampled(x), full, atol=1e-6)


def test_sampled_inference_keeps_detections():
    cfg = get_config("srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py")
    torch.manual_seed(1)
    model = instantiate(cfg.model).eval()
    with torch.no_grad():  # make the threshold matter: put it inside the difference range
        model.feature_hook.threshold.thresh.fill_(0.3)
    x = [{k: v for k, v in b.items() if k != "instances"} for b in _batch([(128, 160)])]
    with torch.no_grad():
        fast = model(x)[0]["instances"]
        model.feature_hook.sampled_inference = False
        full = model(x)[0]["instances"]
    assert len(fast) == len(full) > 0
    assert torch.allclose(fast.pred_boxes.tensor, full.pred_boxes.tensor, atol=1e-3)
    assert torch.allclose(fast.scores, full.scores, atol=1e-5)


def test_hook_trains_in_two_processes(tmp_path):
    """Every parameter of SR-TOD's hook gets a gradient in every iteration (the threshold through
    its surrogate, the head through loss_rec, DGFE through the features), so DDP with
    find_unused_parameters=False trains it in 2 gloo processes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[3]
    out = tmp_path / "ddp"
    cmd = [sys.executable, str(repo / "tools" / "lazyconfig_train_net.py"), "--config-file",
           str(repo / "configs" / "srtod" / "faster_rcnn_srtod_R18s_fpn_synthetic.py"), "--num-gpus", "2",
           "dataloader.train.total_batch_size=2",
           "dataloader.train.num_workers=0", "train.device=cpu", "train.max_iter=3", "train.eval_period=0",
           "train.checkpointer.period=100", f"train.output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "World size: 2" in proc.stderr + proc.stdout
    assert (out / "model_final.pth").exists()


def test_hook_as_a_whole_against_an_independent_computation():
    """SRTOD end to end on fixed 'FPN' features: P2' = P2 * w * (1 + D_b at the top-left pixel
    of every 4x4 cell) with w the CBAM weights written out by hand; P3-P6 untouched; the head
    reads the UN-enhanced P2; loss_rec = weight x mean squared error against raw / 255 (RGB);
    the same P2' at inference (sampled reconstruction); nothing is kept between calls."""
    from detectron2.structures import ImageList

    from sod2.modeling.meta_arch import FeatureHookInput
    from sod2.errors import UserError

    C = 32
    torch.manual_seed(0)
    proj = torch.nn.Conv2d(3, C, 1)
    hook = SRTOD(head=ReconstructionHead(C, 2), threshold=LearnableThreshold(0.2), dgfe=DGFE(C, ratio=16),
                 loss_weight=0.7)
    x = torch.randn(2, 3, 64, 128)
    raw = torch.randint(0, 256, (2, 3, 64, 128), dtype=torch.uint8)
    inputs = FeatureHookInput(ImageList(x, [(64, 128), (64, 128)]), raw, "RGB")
    with torch.no_grad():
        base = {f"p{k}": proj(torch.nn.functional.avg_pool2d(x, 2 ** k)) for k in range(2, 7)}
    hook.train()
    with EventStorage(0):
        out = hook(base, inputs)
    with torch.no_grad():
        target = raw.float() / 255
        rec = hook.head(base["p2"])  # the un-enhanced P2
        d = (rec - target).abs().mean(dim=1)  # (N, H, W)
        binary = (d > 0.2).float() + 0.5 * (d == 0.2).float()
        small = binary[:, ::4, ::4]  # top-left pixel of each 4x4 cell
        l1, l2 = hook.dgfe.mlp[0], hook.dgfe.mlp[2]

        def mlp(v):  # (N, C) -> (N, C), written out
            return torch.relu(v @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias

        p2 = base["p2"]
        w = torch.sigmoid(mlp(p2.mean(dim=(2, 3))) + mlp(p2.amax(dim=(2, 3))))
        expect = p2 * w[:, :, None, None] * (1 + small[:, None])
        mse = ((rec - target) ** 2).sum() / rec.numel()
    assert 0 < small.mean() < 1  # the threshold matters
    assert torch.allclose(out.features["p2"], expect, atol=1e-6)
    for k in range(3, 7):
        assert torch.equal(out.features[f"p{k}"], base[f"p{k}"])
    assert list(out.losses) == ["loss_rec"] and out.visuals is None
    assert out.losses["loss_rec"].item() == pytest.approx(0.7 * mse.item(), rel=1e-6)
    assert base["p2"] is not out.features["p2"]  # the given dict is not modified
    hook.eval()
    with torch.no_grad():
        out_eval = hook(base, inputs)
    assert out_eval.losses == {} and out_eval.visuals is None
    assert torch.allclose(out_eval.features["p2"], expect, atol=1e-5)
    # a level the backbone does not have: one line naming the key
    hook.level = "p1"
    with pytest.raises(UserError, match="model.feature_hook.level='p1'"):
        hook(base, inputs)
