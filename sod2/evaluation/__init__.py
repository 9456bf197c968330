"""Scale-bucket evaluation.

The array core (:mod:`.cocoeval`, :mod:`.protocols`, :mod:`.coco_json`, :mod:`.visdrone`)
needs only NumPy and stays importable without torch (``tools/evaluate_json.py``);
:mod:`.evaluator` is the Detectron2 ``DatasetEvaluator``.
"""
