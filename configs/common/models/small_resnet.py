"""A small ResNet (BasicBlocks, widths 32-256) with BatchNorm that learns, for training
from scratch on the embedded synthetic dataset on a CPU. ``backbone`` drops into the
``bottom_up`` of any FPN config; ``use_small_resnet(model)`` does the whole swap."""
import copy

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BasicStem, ResNet
from detectron2.modeling.backbone.resnet import BasicBlock

WIDTHS = (32, 64, 128, 256)

backbone = L(ResNet)(
    stem=L(BasicStem)(in_channels=3, out_channels=WIDTHS[0], norm="BN"),
    stages=[
        L(ResNet.make_stage)(
            block_class=BasicBlock,
            num_blocks=2,
            in_channels=WIDTHS[max(i - 1, 0)],
            out_channels=w,
            stride_per_block=[1 if i == 0 else 2, 1],
            norm="BN",
        )
        for i, w in enumerate(WIDTHS)
    ],
    out_features=["res2", "res3", "res4", "res5"],
    freeze_at=0,
)


def use_small_resnet(model, out_features=("res2", "res3", "res4", "res5"), fpn_channels: int = 64):
    """Swap an FPN model config's ResNet for ``backbone`` (in place; returns the model): a
    ``fpn_channels``-wide FPN without normalisation, and the input normalised to unit
    variance for the BatchNorm layers that learn from scratch."""
    bottom_up = copy.deepcopy(backbone)
    bottom_up.out_features = list(out_features)
    model.backbone.bottom_up = bottom_up
    model.backbone.out_channels = fpn_channels
    model.backbone.norm = ""
    model.pixel_std = [57.375, 57.120, 58.395]
    return model
