"""CUDA checks (marker ``cuda``; skipped without a CUDA device; `make gpu-check` runs them):
the adaptive convolution's CUDA kernel against its CPU path, one training step (fp32 and AMP)
and inference of every method's synthetic config on CUDA, and the trainer end to end on CUDA
with AMP on real HIT-UAV images."""
import copy
import math

import pytest
import torch
from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils.events import EventStorage

from sod2.config import get_config, get_config_file
from sod2.modeling.methods.cfinet import AdaptiveConv
from sod2.modeling.methods.cfinet.adaptive_conv import adaptive_conv_offsets, deform_conv_sampled

from ..test_configs import _inputs

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]

METHOD_CONFIGS = [
    "baselines/faster_rcnn_R18s_fpn_synthetic.py",
    "baselines/retinanet_R18s_fpn_synthetic.py",
    "cfinet/cfinet_R18s_fpn_synthetic.py",
    "srtod/faster_rcnn_srtod_R18s_fpn_synthetic.py",
    "srtod/retinanet_srtod_R18s_fpn_synthetic.py",
    "srtod/cfinet_srtod_R18s_fpn_synthetic.py",
    "fgprobe/fgprobe_yolox_tiny_p2_synthetic.py",
    "bsdetr/bs_yolox_tiny_p2_synthetic.py",
    "bsdetr/bsdetr_plain_r18s_synthetic.py",
    "bsdetr/bsdetr_r18s_synthetic.py",
]


@pytest.fixture
def no_tf32():
    """Full fp32 matmuls and convolutions while comparing against the CPU."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _boxes(n, h, w, stride, g):
    """One XYXY box per location around it (4-80 px, some reaching past the map)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    cx = (xs.reshape(-1) + 0.5) * stride + torch.randn(n, h * w, generator=g) * stride
    cy = (ys.reshape(-1) + 0.5) * stride + torch.randn(n, h * w, generator=g) * stride
    bw = 4 + 76 * torch.rand(n, h * w, generator=g)
    bh = 4 + 76 * torch.rand(n, h * w, generator=g)
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)


def test_adaptive_conv_cuda_kernel_matches_cpu_path(no_tf32):
    """AdaptiveConv runs Detectron2's DeformConv CUDA kernel on GPUs and deform_conv_sampled
    (bilinear sampling) on the CPU: same outputs and gradients."""
    g = torch.Generator().manual_seed(0)
    n, c, h, w, stride = 2, 16, 20, 24, 8.0
    torch.manual_seed(0)
    cpu = AdaptiveConv(c, 8)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(n, c, h, w, generator=g)
    boxes = _boxes(n, h, w, stride, g)
    offsets = adaptive_conv_offsets(boxes, stride, h, w)
    grad_out = torch.randn(n, 8, h, w, generator=g)

    # the convolution itself (before the ReLU), forward and backward
    x_cpu, x_gpu = x.clone().requires_grad_(), x.cuda().requires_grad_()
    y_cpu = deform_conv_sampled(x_cpu, offsets, cpu.conv.weight)
    y_gpu = gpu.conv(x_gpu, offsets.cuda())
    torch.testing.assert_close(y_gpu.cpu(), y_cpu.detach(), atol=1e-5, rtol=1e-4)
    (y_cpu * grad_out).sum().backward()
    (y_gpu * grad_out.cuda()).sum().backward()
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gpu.conv.weight.grad.cpu(), cpu.conv.weight.grad, atol=1e-4, rtol=1e-4)

    # the module: CUDA takes the kernel path, the CPU the sampled one
    with torch.no_grad():
        torch.testing.assert_close(gpu(x.cuda(), boxes.cuda(), stride).cpu(), cpu(x, boxes, stride),
                                   atol=1e-5, rtol=1e-4)


def _to_cuda(batch):
    out = []
    for d in batch:
        d = dict(d, image=d["image"].cuda())
        if "instances" in d:
            d["instances"] = d["instances"].to("cuda")
        out.append(d)
    return out


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "amp"])
@pytest.mark.parametrize("path", METHOD_CONFIGS)
def test_method_trains_and_infers_on_cuda(path, amp):
    """One step of the trainer the config selects (SimpleTrainer, or AMPTrainer with
    train.amp.enabled=True), then inference, on CUDA."""
    torch.manual_seed(0)
    cfg = get_config(path)
    cfg.train.amp.enabled = amp
    model = instantiate(cfg.model).cuda()
    assert all(p.is_cuda for p in model.parameters())
    cfg.optimizer.params.model = model
    cfg.optimizer.lr = 1e-4
    opt = instantiate(cfg.optimizer)
    batches = [_to_cuda(_inputs(2, seed=s)) for s in range(2)]
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, batches, opt)
    model.train()
    with EventStorage(0) as storage:
        trainer.storage = storage
        for it in range(2):
            trainer.iter = it
            trainer.run_step()  # raises FloatingPointError on a non-finite loss
            storage.step()
        losses = {k: v.latest() for k, v in storage.histories().items() if "loss" in k}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    if "srtod" in path:
        assert "loss_rec" in losses
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        out = model(_to_cuda(_inputs(2, with_gt=False, seed=5)))
    inst = out[0]["instances"]
    assert inst.pred_boxes.tensor.is_cuda and torch.isfinite(inst.pred_boxes.tensor).all()


@pytest.mark.parametrize("path", [
    "baselines/faster_rcnn_R50_fpn_hituav_1x.py",
    "cfinet/cfinet_R18s_fpn_hituav_cpu.py",
    "srtod/faster_rcnn_srtod_R18s_fpn_hituav_cpu.py",
])
def test_trainer_on_cuda_with_amp(path, hituav_datasets, tmp_path):
    """tools/lazyconfig_train_net.py's main with train.device=cuda and AMP on real thermal
    images (data loader, 3 training steps, evaluation)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.engine import default_argument_parser

    from sod2.engine.lazy_train import main

    name = "hituav_val_first3"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get("hituav_val")[:3])
        MetadataCatalog.get(name).set(**{k: v for k, v in MetadataCatalog.get("hituav_val").as_dict().items()
                                         if k != "name"})
    args = default_argument_parser().parse_args([
        "--config-file", get_config_file(path),
        "train.init_checkpoint=", "train.device=cuda", "train.amp.enabled=True", "train.max_iter=3",
        "train.eval_period=3", f"train.output_dir={tmp_path}", "dataloader.train.dataset.names=hituav_val",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0",
        f"dataloader.test.dataset.names={name}", "dataloader.test.num_workers=0",
        "lr_multiplier.warmup_length=0.3", "lr_multiplier.scheduler.num_updates=3",
        "lr_multiplier.scheduler.milestones=[2]", "lr_multiplier.scheduler.values=[1.0,0.1]"])
    main(args)
    metrics = (tmp_path / "metrics.json").read_text()
    assert '"bbox/AP"' in metrics and (tmp_path / f"{name}_results.json").exists()
