"""YOLOX-Tiny with Foreground Probing's 4-scale head (P2-P5) and CIoU loss, without the probe (the
plain twin of ``fgprobe_yolox_tiny_p2_hituav_cpu.py``), on the real HIT-UAV thermal images (CC BY
4.0, Suo et al. 2023) within a CPU budget: trained from scratch on the first 200 images of the
public val split, evaluated on its other 90 (AI-TOD buckets), at 512 px (YOLOX recipe: Mosaic +
affine 0.5-1.5, HSV, flips, multi-scale 448-576, EMA, warm-up + cosine, L1 in the last epochs),
batch 4, 4 epochs (200 iterations). Shows the chain works on real data, not converged accuracy."""
from ..common.data.hituav_cpu import NUM_TRAIN_IMAGES, dataloader
from ..common.models.yolox import model, use_p2, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

SIZE, EPOCHS = 512, 4
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // 4  # batch 4

yolox_size(model, "tiny")
use_p2(model)  # the paper's 4-scale head (P2-P5)
model.iou_loss_type = "ciou"  # the paper's box loss
model.num_classes = 4
yolox_test_resize(dataloader, model, SIZE)  # the official test path
# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=SIZE, epochs=EPOCHS, iters_per_epoch=ITERS_PER_EPOCH,
                                 warmup_epochs=1, no_aug_epochs=1, size_steps=2, max_labels=500, small_model=True)
train.ema.ramp = 100.0
optimizer.lr = 0.01
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter
