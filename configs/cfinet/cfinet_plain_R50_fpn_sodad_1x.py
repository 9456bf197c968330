"""CFINet's plain twin R50-FPN on SODA-D (800 px patches resized to 1200, merged onto whole images
for the sodad protocol): ``cfinet_plain_R50_fpn_aitod_1x.py`` with this dataset, 100 detections
per patch and a fixed 90k-iteration schedule."""
from ..common.data.sodad_patches import dataloader
from ..common.models.limits import set_detections_per_image
from ..common.schedules import step_schedule
from .cfinet_plain_R50_fpn_aitod_1x import model, optimizer, train

model.roi_heads.num_classes = 9
# 100 detections per 800 px patch, as CFINet (the whole-image merge keeps up to
# patches x 100 for the SODA-D protocol's maxDets 100/300/1000)
set_detections_per_image(model, 100)
dataloader.train.total_batch_size = 4
# 12 epochs of the training patches (tools/split_images.py prints their number N):
# train.max_iter = 12 * N // 4 and steps at 8/12 and 11/12 of it
train.max_iter = 90000
lr_multiplier = step_schedule(train.max_iter, [60000, 82500], warmup_iters=500, warmup_factor=0.001)
train.eval_period = train.max_iter
train.checkpointer.period = train.max_iter // 12
