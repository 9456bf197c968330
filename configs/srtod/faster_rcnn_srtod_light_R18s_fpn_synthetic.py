"""sod2's LIGHT SR-TOD variant (not the paper's) on the synthetic data: the reconstruction head
reduces P2 to 16 channels first (16 -> 8 -> 4 -> RGB instead of 64 -> 32 -> 16 -> RGB), the
same 16x cut as the R50 light config; for measuring the light head's accuracy cost."""
from .faster_rcnn_srtod_R18s_fpn_synthetic import dataloader, lr_multiplier, model, optimizer, train

model.feature_hook.head.reduce_to = 16
