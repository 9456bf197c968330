"""Better Sampling's scale-aligned target (ST) and sample reweighting (SR) on a dense detector:
YOLOX-Tiny with the 4-scale head (P2-P5) and CIoU, trained from scratch on the embedded
synthetic dataset on a CPU. Everything else (data, YOLOX recipe at 256 px, SGD lr 0.02 at
batch 8, 6 epochs) is its plain twin ``fgprobe/fgprobe_plain_yolox_tiny_p2_synthetic.py``.
Off (= the plain twin): ``model.better_sampling=null``; one part off:
``model.better_sampling.class_target=null`` (ST) / ``model.better_sampling.reweighting=null`` (SR)."""
from sod2.modeling.methods.better_sampling import BetterSamplingYOLOX

from ..common.models.dense_better_sampling import dense_better_sampling as _better_sampling
from ..fgprobe.fgprobe_plain_yolox_tiny_p2_synthetic import dataloader, lr_multiplier, model, optimizer, train

model._target_ = BetterSamplingYOLOX
model.better_sampling = _better_sampling
