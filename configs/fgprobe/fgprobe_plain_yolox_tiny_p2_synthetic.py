"""YOLOX-Tiny with Foreground Probing's 4-scale head (P2-P5) and CIoU loss, without the probe (the
plain twin of ``fgprobe_yolox_tiny_p2_synthetic.py``), trained from scratch on the embedded
synthetic dataset on a CPU: YOLOX's recipe at 256 px (Mosaic + random affine with scale 0.5-1.5
as YOLOX-Tiny, no MixUp, HSV, flips, multi-scale 192-320, EMA, quadratic warm-up for 1 epoch,
cosine, the last 3 epochs without Mosaic and with the L1 loss), SGD lr 0.02 at batch 8, 6 epochs
of the 480 training images (360 iterations, ~7 min on 2 cores). ``make fgprobe-demo`` trains it
next to its Foreground Probing config; dense Better Sampling's
``bsdetr/bs_yolox_tiny_p2_synthetic.py`` is this config plus its parts."""
from ..common.data.synthetic import NUM_TRAIN_IMAGES, dataloader
from ..common.models.yolox import model, use_p2, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

INPUT_SIZE = 256
EPOCHS = 6
dataloader.train.total_batch_size = 8
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // 8

yolox_size(model, "tiny")
use_p2(model)  # the paper's 4-scale head (P2-P5)
model.iou_loss_type = "ciou"  # the paper's box loss
model.num_classes = 3
yolox_test_resize(dataloader, model, INPUT_SIZE)  # the official test path (256x256 images: no resize)
model.max_detections_per_image = 1500  # the AI-TOD protocol's maxDets

# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=INPUT_SIZE, epochs=EPOCHS, iters_per_epoch=ITERS_PER_EPOCH,
                                 warmup_epochs=1, no_aug_epochs=2, size_steps=2, max_labels=500, small_model=True)
train.ema.ramp = 200.0  # a short run: the EMA follows within a few hundred steps
optimizer.lr = 0.02
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter
