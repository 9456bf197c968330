"""CFINet R50-FPN on SODA-D, evaluated on the whole test images with on-the-fly slicing
instead of the pre-split patches: 800 px slices with stride 650 (SODA-D's split), each
resized to 1200 as the patches are, ignore regions painted 0 as tools/split_images.py
paints them, detections merged by class-wise NMS (IoU > 0.5) as the evaluator merges
patches. Same weights, same numbers as cfinet_R50_fpn_sodad_1x.py's patch evaluation:

    python tools/lazyconfig_train_net.py --config-file configs/cfinet/cfinet_R50_fpn_sodad_sliced.py \
        --eval-only train.init_checkpoint=output/cfinet_R50_fpn_sodad_1x/model_final.pth

Training with this config trains on the patches exactly as cfinet_R50_fpn_sodad_1x.py."""
from detectron2.config import LazyCall as L

from sod2.inference import FillIgnoreMapper, above

from ..common.slicing import with_slicing
from .cfinet_R50_fpn_sodad_1x import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

dataloader.test.dataset.names = "sodad_test"
model = with_slicing(model, size=800, stride=650, batch_size=2, merge="nms", metric="iou",
                     threshold=above(0.5), class_agnostic=False, pad_value=0, dataloader=dataloader)
# the wrapped mapper's relative interpolation (image format = the training mapper's) would
# point one level off inside the wrapper: resolve it first
dataloader.test.mapper.image_format = dataloader.train.mapper.image_format
dataloader.test.mapper = L(FillIgnoreMapper)(mapper=dataloader.test.mapper, fill=[0, 0, 0])
