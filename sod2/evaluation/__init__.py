"""Scale-bucket evaluation.

The array core (:mod:`.cocoeval`, :mod:`.protocols`, :mod:`.coco_json`) needs only NumPy;
the Detectron2 evaluator is imported by ``sod2/__init__`` through :mod:`.evaluator`.
"""
