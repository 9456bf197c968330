"""YOLOX-S with Foreground Probing's 4-scale head (P2-P5) and CIoU loss, without the probe (the
plain twin of ``fgprobe_yolox_s_p2_hituav.py``; sod2's choice for this small thermal dataset:
2029 training images of 640x512) on HIT-UAV (CC BY 4.0, Suo et al. 2023): 640 px YOLOX
recipe, 640 px test, SGD lr 0.01 at batch 8, 100 epochs, from the official COCO YOLOX-S
weights (``python tools/convert_weights.py yolox yolox_s.pth weights/yolox_s_sod2.pth``)."""
from ..common.data.hituav import NUM_TRAIN_IMAGES, dataloader
from ..common.models.yolox import model, use_p2, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

SIZE, EPOCHS = 640, 100
dataloader.train.total_batch_size = 8
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // 8

yolox_size(model, "s")
use_p2(model)  # the paper's 4-scale head (P2-P5)
model.iou_loss_type = "ciou"  # the paper's box loss
model.num_classes = 4
yolox_test_resize(dataloader, model, SIZE)  # the official test path
# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=SIZE, epochs=EPOCHS, iters_per_epoch=ITERS_PER_EPOCH,
                                 max_labels=500)
optimizer.lr = 0.01
train.init_checkpoint = "./weights/yolox_s_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 10 * ITERS_PER_EPOCH
train.checkpointer.period = 10 * ITERS_PER_EPOCH
