"""Better Sampling's scale-aligned target (ST) and sample reweighting (SR) on a dense detector:
YOLOX-Tiny with the 4-scale head (P2-P5) and CIoU, trained from scratch on the embedded
synthetic dataset on a CPU. Everything else (data, YOLOX recipe at 256 px, SGD lr 0.02 at
batch 8, 6 epochs) is ``fgprobe_plain_yolox_tiny_p2_synthetic.py`` (Foreground Probing's
config with ``model.head.probe=None``), the plain twin: each part is off again by one
override, ``model.class_target=None`` (ST) / ``model.reweighting=None`` (SR)."""
from ..common.models.dense_better_sampling import with_dense_better_sampling
from ..fgprobe.fgprobe_yolox_tiny_p2_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.head.probe = None  # = fgprobe_plain_yolox_tiny_p2_synthetic.py
with_dense_better_sampling(model, st=True, sr=True)
