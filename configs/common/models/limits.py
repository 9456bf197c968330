"""Per-image limits of any sod2 model config (Faster/Cascade R-CNN, CFINet, RetinaNet, with or
without SR-TOD), as functions that edit a LazyCall config in place and return it.

``set_detections_per_image(model, 100)`` sets the test-time detection limit wherever the
detector keeps it (``box_predictor.test_topk_per_image``, every cascade stage's
``box_predictors``, RetinaNet's ``max_detections_per_image``).
"""


def set_detections_per_image(model, n: int, candidates: int = None):
    """Keep at most ``n`` detections per image at test time.

    Args:
        model: a LazyCall config of a GeneralizedRCNN (any ROI heads) or a RetinaNet.
        n: the limit.
        candidates: RetinaNet only: the per-level top-k before NMS (``test_topk_candidates``).
    """
    if "roi_heads" in model:
        rh = model.roi_heads
        for p in (rh.box_predictors if "box_predictors" in rh else [rh.box_predictor]):
            p.test_topk_per_image = n
    elif "max_detections_per_image" in model:
        model.max_detections_per_image = n
        if candidates is not None:
            model.test_topk_candidates = candidates
    else:
        raise ValueError("set_detections_per_image: the model has neither roi_heads nor "
                         "max_detections_per_image")
    return model
