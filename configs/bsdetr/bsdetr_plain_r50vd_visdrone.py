"""Plain RT-DETR-R50vd on VisDrone2019-DET, the baseline of ``bsdetr_r50vd_visdrone.py`` (Better
Sampling), in the paper's setting: 640 px for training and test (aspect not kept), RT-DETR's
recipe (photometric distortion, zoom-out, IoU crop, flip, resize; multi-scale 480-800; EMA
0.9999; gradient clipping 0.1) with the paper's AdamW lr 2e-4 (backbone 0.1x), 2000-iteration
linear warm-up, 72 epochs; RT-DETR's criterion (VFL alpha 0.75 gamma 2.0). Batch 16, RT-DETR's
(the paper does not give its batch). Train on train, evaluate on val (the data config's
protocol; the paper reports the test set).

Weights: the ImageNet ResNet50-vd (SSLD v2) backbone that RT-DETR starts from, converted to
sod2's names (``backbone.`` + :func:`sod2.modeling.backbone.presnet_key_to_sod2` of the
reference's ``ResNet50_vd_ssld_v2_pretrained_from_paddle.pth`` keys) at
``./weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth``. Every ``bsdetr_*_r50vd_visdrone.py``
imports this file and changes only the criterion."""
from ..common.data.visdrone import NUM_TRAIN_IMAGES, dataloader
from ..common.models.rtdetr import model, rtdetr_depth, rtdetr_norm
from ..common.recipes.rtdetr import linear_warmup
from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
from ..common.train import train

SIZE, EPOCHS, BATCH = 640, 72, 16
dataloader.train.total_batch_size = BATCH
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // BATCH

rtdetr_depth(model, "r50")
rtdetr_norm(model, "SyncBN")  # the reference's sync_bn (plain BN in one process)
model.num_classes = 10
# RT-DETR's recipe (configs/common/recipes/rtdetr.py), the data config's ignore-region painting kept
use_rtdetr_recipe(dataloader, train)
optimizer.lr = 2e-4
lr_multiplier = linear_warmup(EPOCHS * ITERS_PER_EPOCH, 2000)
train.init_checkpoint = "./weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 6 * ITERS_PER_EPOCH
train.checkpointer.period = 6 * ITERS_PER_EPOCH
