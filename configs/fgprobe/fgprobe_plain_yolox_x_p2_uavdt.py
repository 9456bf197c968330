"""YOLOX-X with Foreground Probing's 4-scale head (P2-P5) and CIoU loss, without the probe (the
plain twin of ``fgprobe_yolox_x_p2_uavdt.py``), on UAVDT as the paper: test at 1286 px
(following ESOD), everything else as ``fgprobe_plain_yolox_x_p2_visdrone.py`` (960 px YOLOX
recipe, lr 0.01 at batch 8, 100 epochs, converted COCO YOLOX-X weights). UAVDT has 3 classes
(car, truck, bus). Set ``NUM_TRAIN_IMAGES`` (the frames of the 30 training sequences on disk)
through ``train.max_iter`` / the schedule when your copy differs."""
from ..common.data.uavdt import dataloader
from ..common.models.yolox import model, use_p2, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

TRAIN_SIZE, TEST_SIZE, EPOCHS = 960, 1286, 100
NUM_TRAIN_IMAGES = 23258  # UAVDT-DET training frames (30 sequences)
dataloader.train.total_batch_size = 8
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // 8

yolox_size(model, "x")
use_p2(model)  # the paper's 4-scale head (P2-P5)
model.iou_loss_type = "ciou"  # the paper's box loss
model.num_classes = 3
yolox_test_resize(dataloader, model, TEST_SIZE)  # the official test path
# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=TRAIN_SIZE, epochs=EPOCHS,
                                 iters_per_epoch=ITERS_PER_EPOCH, max_labels=1000)
optimizer.lr = 0.01
train.init_checkpoint = "./weights/yolox_x_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 10 * ITERS_PER_EPOCH
train.checkpointer.period = 10 * ITERS_PER_EPOCH
