"""Plain RT-DETR, the baseline of ``bsdetr_r18s_synthetic.py`` (Better Sampling): a small RT-DETR
trained from scratch on the embedded synthetic dataset on a CPU, with RT-DETR's own criterion
(VFL alpha 0.75 gamma 2.0). Every ``bsdetr_*_r18s_synthetic.py`` imports this file and changes
only the criterion.

Model: ResNet-18-vd at half width (``widths`` 32-64-128-256: deep stem, average-pool
shortcuts, BatchNorm that learns, nothing frozen); encoder and decoder 128 wide (FFN 512, 8 heads), 3 decoder layers,
300 queries, 100 denoising queries.
Data: 480 images of 256 px, trained and tested at 320x320 (aspect not kept), RT-DETR's
augmentations except the zoom-out (p 0: the objects are 4-40 px, a 1-4x zoom-out would
shrink most of them to a few pixels in a run this short); multi-scale 256-384 (320 three
times). Optimiser: AdamW lr 4e-4 for every part (from scratch: no slower backbone), gradient
clipping 0.1, 50-iteration linear warm-up, EMA (ramp 200), batch 8, 6 epochs (360
iterations). Evaluation: sod2_synthetic_val, AI-TOD buckets."""
from ..common.data.synthetic import NUM_TRAIN_IMAGES, dataloader
from ..common.models.rtdetr import model, rtdetr_depth, rtdetr_eval_size
from ..common.recipes.rtdetr import linear_warmup
from ..common.recipes.rtdetr import optimizer, use_rtdetr_recipe
from ..common.train import train

SIZE, EPOCHS, BATCH, HIDDEN = 320, 6, 8, 128
WIDTHS = (32, 64, 128, 256)
dataloader.train.total_batch_size = BATCH
ITERS_PER_EPOCH = NUM_TRAIN_IMAGES // BATCH

rtdetr_depth(model, "r18")  # 3 decoder layers, CSP expansion 0.5, trainable BN
model.num_classes = 3
model.backbone.widths = list(WIDTHS)
model.backbone.freeze_at = 0
model.encoder.in_channels = list(WIDTHS[1:])
model.encoder.hidden_dim = HIDDEN
model.encoder.dim_feedforward = 4 * HIDDEN
model.decoder.in_channels = [HIDDEN] * 3
model.decoder.hidden_dim = HIDDEN
model.decoder.dim_feedforward = 4 * HIDDEN
rtdetr_eval_size(model, (SIZE, SIZE))

# RT-DETR's recipe (configs/common/recipes/rtdetr.py), the data config's ignore-region painting kept
use_rtdetr_recipe(dataloader, train)
train.multiscale.input_size = [SIZE, SIZE]
train.multiscale.sizes = [256, 288, 320, 320, 320, 352, 384]
train.multiscale.size_range = [256, 384]
train.ema.ramp = 200.0
dataloader.train.mapper.augmentations[1].p = 0.0  # no zoom-out
optimizer.lr = 4e-4
optimizer.params.lr_factor_func.factors = {"backbone.": 1.0}
lr_multiplier = linear_warmup(EPOCHS * ITERS_PER_EPOCH, 50)
train.max_iter = EPOCHS * ITERS_PER_EPOCH
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter
