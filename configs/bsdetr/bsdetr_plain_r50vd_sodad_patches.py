"""Plain RT-DETR-R50vd on SODA-D, the baseline of ``bsdetr_r50vd_sodad_patches.py`` (Better
Sampling), in the paper's setting: 640 px (the 800x800 training/test patches of
``tools/split_images.py`` resized to 640x640; the evaluator merges patch detections onto
whole images, sodad protocol), RT-DETR's recipe (photometric distortion, zoom-out, IoU crop,
flip, resize; multi-scale 480-800; EMA 0.9999; gradient clipping 0.1) with the paper's AdamW
lr 2e-4 (backbone 0.1x), 2000-iteration linear warm-up, 72 epochs, batch 16 (RT-DETR's; the
paper does not give its batch); RT-DETR's criterion (VFL alpha 0.75 gamma 2.0). Every
``bsdetr_*_r50vd_sodad_patches.py`` imports this file and changes only the criterion.

72 epochs depend on your split: check ``NUM_TRAIN_PATCHES`` below (or ``train.max_iter``) against the
number of training patches ``tools/split_images.py`` prints.

Weights: the ImageNet ResNet50-vd (SSLD v2) backbone, converted to sod2's names, at
``./weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth`` (see ``bsdetr_plain_r50vd_visdrone.py``)."""
from ..common.data.sodad_patches import dataloader
from ..common.models.rtdetr import model, rtdetr_depth, rtdetr_norm
from ..common.recipes.rtdetr import linear_warmup
from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
from ..common.train import train

SIZE, EPOCHS, BATCH = 640, 72, 16
# SODA-D's training split cut into 800 px patches with stride 650: ~30000 patches, the number the
# CFINet SODA-D config assumes too (12 epochs = 90000 iterations of batch 4); use the count
# tools/split_images.py prints for your copy
NUM_TRAIN_PATCHES = 30000
dataloader.train.total_batch_size = BATCH
ITERS_PER_EPOCH = NUM_TRAIN_PATCHES // BATCH

rtdetr_depth(model, "r50")
rtdetr_norm(model, "SyncBN")  # the reference's sync_bn (plain BN in one process)
model.num_classes = 9
# RT-DETR's recipe (configs/common/recipes/rtdetr.py), the data config's ignore-region painting kept
use_rtdetr_recipe(dataloader, train)
optimizer.lr = 2e-4
lr_multiplier = linear_warmup(EPOCHS * ITERS_PER_EPOCH, 2000)
train.init_checkpoint = "./weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = 12 * ITERS_PER_EPOCH
train.checkpointer.period = 6 * ITERS_PER_EPOCH
