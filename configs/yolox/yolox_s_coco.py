"""YOLOX-S on COCO 2017 (80 classes), the reference's recipe: 640 px letterboxed input (BGR 0-255);
the official test path (``yolox_test_resize``: OpenCV resize to ``int(h * r), int(w * r)``, padded
to 640x640 with 114, boxes divided by r, not clipped, no cap on the detections per image), score
threshold 0.01, class-wise NMS 0.65;
SGD (Nesterov, lr 0.01 per 64 images, weight decay 5e-4 on weights only), Mosaic + affine +
MixUp + HSV + flip, multi-scale 480-800, EMA, quadratic warm-up (5 epochs) + cosine over 300
epochs with the last 15 flat, without Mosaic and with the L1 loss (``the YOLOX recipe``).
The other sizes derive from this file. Converted official weights:
``python tools/convert_weights.py yolox yolox_s.pth out.pth`` then ``train.init_checkpoint=out.pth``."""
from ..common.data.coco import dataloader
from ..common.models.yolox import model, yolox_size
from ..common.optim import SGD_nesterov_nodecay_norm_bias as optimizer
from ..common.train import train
from ..common.recipes.yolox import use_yolox_recipe, yolox_test_resize

INPUT_SIZE = 640
EPOCHS = 300
ITERS_PER_EPOCH = 118287 // 64  # COCO train2017 at batch 64

yolox_size(model, "s")
model.num_classes = 80
yolox_test_resize(dataloader, model, INPUT_SIZE)
model.clip_test_boxes = False  # the official evaluator does not clip
model.max_detections_per_image = None  # nor cap
dataloader.train.total_batch_size = 64
# YOLOX's recipe (configs/common/recipes/yolox.py: Mosaic around the data config's dataset,
# EMA, multi-scale batches, the no-augmentation tail, warm-up + cosine)
lr_multiplier = use_yolox_recipe(dataloader, train, input_size=INPUT_SIZE, epochs=EPOCHS,
                                 iters_per_epoch=ITERS_PER_EPOCH)
optimizer.lr = 0.01  # 0.01 / 64 per image x 64

train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 10 * ITERS_PER_EPOCH
train.checkpointer.period = 10 * ITERS_PER_EPOCH
