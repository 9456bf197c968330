"""Sliced inference for any sod2 config (sod2/inference/sliced.py has the rules).

In a config file::

    from ..baselines.faster_rcnn_R50_fpn_visdrone_1x import dataloader, lr_multiplier, model, optimizer, train
    from ..common.slicing import with_slicing

    model = with_slicing(model, size=800, overlap=0.2, dataloader=dataloader)

The model is then ``SlicedInference(model, ...)``: training is unchanged (the wrapper is
the model in training mode), evaluation and the demo cut each image into slices (the test
mapper's resizing moves to each slice), and checkpoints of the plain config load as they
are (same ``state_dict``). One override switches slicing off again (``model.enabled=False``:
the plain model, resized as before) or changes it (``model.slice_size=640``,
``model.full_image=True``, ``model.merge=greedynmm``, ``model.match_metric=ios``, ...).
"""
from sod2.inference.config import with_slicing  # noqa: F401
