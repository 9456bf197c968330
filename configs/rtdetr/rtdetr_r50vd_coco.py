"""RT-DETR-R50vd on COCO 2017 (80 classes), the reference's 6x recipe (lyuwenyu/RT-DETR v1,
``configs/rtdetr/rtdetr_r50vd_6x_coco.yml``): 640x640 input (aspect not kept, RGB in [0, 1]),
top-300 detections over queries x classes without NMS or threshold, mapped back to the
original image; AdamW lr 1e-4 (backbone 1e-5), weight decay 1e-4 (none on norms and biases),
gradient clipping 0.1, EMA 0.9999 (ramp 2000), constant learning rate without warm-up,
multi-scale 480-800 (nearest), photometric distortion, zoom-out, IoU crop, flip
(``configs/common/recipes/rtdetr.py``); batch 16 (the reference's 4 GPUs x 4) for 72 epochs; every trainable
BatchNorm synchronised across GPUs (the reference's ``sync_bn``). Like the reference, the
images without objects are trained on too (``filter_empty=False``: 118287 images).

Backbone weights: the reference's ImageNet ResNet-vd (``ResNet50_vd_ssld_v2_pretrained_from_
paddle.pth``, from the RT-DETR author's release) with its keys renamed to sod2's
(``sod2.modeling.backbone.presnet_key_to_sod2``, prefixed ``backbone.``) at
``train.init_checkpoint``. The other depths derive from this file."""
from ..common.data.coco import dataloader
from ..common.models.rtdetr import model, rtdetr_depth, rtdetr_norm
from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
from ..common.recipes.rtdetr import constant_lr as lr_multiplier
from ..common.train import train

INPUT_SIZE = 640
EPOCHS = 72
BATCH = 16
ITERS_PER_EPOCH = 118287 // BATCH  # every COCO train2017 image, drop_last as the reference

rtdetr_depth(model, "r50")
rtdetr_norm(model, "SyncBN")
model.num_classes = 80
dataloader.train.dataset.filter_empty = False
dataloader.train.total_batch_size = BATCH
# RT-DETR's recipe (configs/common/recipes/rtdetr.py), the data config's ignore-region painting kept
use_rtdetr_recipe(dataloader, train)

train.init_checkpoint = "./weights/ResNet50_vd_ssld_v2_pretrained_sod2.pth"
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = ITERS_PER_EPOCH
train.checkpointer.period = ITERS_PER_EPOCH
