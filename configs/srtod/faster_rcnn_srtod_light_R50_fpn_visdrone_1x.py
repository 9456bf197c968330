"""sod2's LIGHT SR-TOD variant (not the paper's): the reconstruction head first reduces P2 to
64 channels (1x1 conv), then 64 -> 32 -> 16 -> RGB, about 16x cheaper than the paper's
256 -> 128 -> 64 head. Everything else as faster_rcnn_srtod_R50_fpn_visdrone_1x; its accuracy
cost is measured in projects/SR-TOD/README.md."""
from .faster_rcnn_srtod_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train

model.feature_hook.head.reduce_to = 64
