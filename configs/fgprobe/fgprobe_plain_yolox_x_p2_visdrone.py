"""YOLOX-X with Foreground Probing's 4-scale head (P2-P5) and CIoU loss, without the probe (the
plain twin of ``fgprobe_yolox_x_p2_visdrone.py``, the paper's YOLOX row) on VisDrone2019-DET:
960 px training (YOLOX's recipe: Mosaic, MixUp, affine, HSV, multi-scale 800-1120, EMA, L1 in
the last epochs), 1504 px test, SGD lr 0.01 at batch 8, 100 epochs, from the official COCO
YOLOX-X weights converted to sod2's names:
    python tools/convert_weights.py yolox yolox_x.pth weights/yolox_x_sod2.pth
(yolox_x.pth from the official YOLOX release page; the 80-class prediction layers are skipped
at loading)."""
from ..common.data.visdrone import NUM_TRAIN_IMAGES, dataloader
from ..common.models.yolox import model, use_p2, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

TRAIN_SIZE, TEST_SIZE, EPOCHS = 960, 1504, 100
dataloader.train.total_batch_size = 8
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // 8

yolox_size(model, "x")
use_p2(model)  # the paper's 4-scale head (P2-P5)
model.iou_loss_type = "ciou"  # the paper's box loss
model.num_classes = 10
model.max_detections_per_image = 1500  # at least the protocol's maxDets
yolox_test_resize(dataloader, model, TEST_SIZE)  # the official test path
# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=TRAIN_SIZE, epochs=EPOCHS,
                                 iters_per_epoch=ITERS_PER_EPOCH, max_labels=1000)
optimizer.lr = 0.01  # the paper's lr at batch 8
train.init_checkpoint = "./weights/yolox_x_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 10 * ITERS_PER_EPOCH
train.checkpointer.period = 10 * ITERS_PER_EPOCH
