""""Off is the baseline" (issue 16 item 2), checked one method at a time by
``tests/methods/test_off_is_baseline_<method>.py``.

``check_off_is_baseline(method_config, override, baseline_config, model_keys)`` loads the
method config, applies its ONE documented off override through the training tool's own
override path (``apply_checked_overrides``), and asserts that the model it builds IS the
baseline config's model:

1. their ``model`` sections differ only in ``model_keys`` (dotted ``fnmatch`` patterns, e.g.
   ``model._target_``: a method's subclass), whatever else the configs set;
2. the method model is an instance of the baseline's class, with the same parameter names,
   the same buffer names (non-persistent buffers included) and the same state-dict keys,
   shapes and dtypes;
3. the baseline's state dict loads into it strictly (baseline checkpoints load);
4. with the same deterministic weights (``golden_runs.fill``), one seeded training forward
   gives bit-equal losses and one eval forward bit-equal detections (boxes, scores, classes)
   on the hand-built batch of ``golden_runs`` (a 128x128 image with six objects and a 96x128
   image without any).
"""
from __future__ import annotations

import fnmatch
from typing import Sequence

import torch
from detectron2.config import instantiate

from sod2.config import get_config
from sod2.engine.lazy_train import apply_checked_overrides

from ..golden import golden_runs as G
from ..golden.config_snapshots import flatten, resolved


def _model_items(cfg) -> dict:
    return flatten(resolved(cfg)["model"])


def model_config_difference(cfg_a, cfg_b) -> list:
    """Dotted keys (``model.``-prefixed) whose resolved values differ between two configs' models."""
    a, b = _model_items(cfg_a), _model_items(cfg_b)
    return sorted("model." + k for k in set(a) | set(b)
                  if k not in a or k not in b or repr(a[k]) != repr(b[k]))


def layout(model: torch.nn.Module) -> dict:
    return {"parameters": [n for n, _ in model.named_parameters()],
            "buffers": [n for n, _ in model.named_buffers()],
            "state_dict": {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}}


def check_off_is_baseline(method_config: str, override: str, baseline_config: str,
                          model_keys: Sequence[str] = ()) -> None:
    cfg_m = apply_checked_overrides(get_config(method_config), [override], warn=False)
    cfg_b = get_config(baseline_config)
    extra = [k for k in model_config_difference(cfg_m, cfg_b)
             if not any(fnmatch.fnmatchcase(k, p) or k.startswith(p + ".") for p in model_keys)]
    assert not extra, f"{method_config} with {override!r} differs from {baseline_config} in {extra}"

    torch.manual_seed(0)
    m = instantiate(cfg_m.model)
    torch.manual_seed(0)
    b = instantiate(cfg_b.model)
    assert isinstance(m, type(b)), f"{type(m).__name__} is not a {type(b).__name__}"
    lm, lb = layout(m), layout(b)
    for part in ("parameters", "buffers", "state_dict"):
        assert lm[part] == lb[part], (
            f"{part} differ: only in the method model {sorted(set(lm[part]) - set(lb[part]))[:10]}, "
            f"only in the baseline {sorted(set(lb[part]) - set(lm[part]))[:10]}")
    m.load_state_dict(b.state_dict(), strict=True)

    rm, rb = G.run_golden(m), G.run_golden(b)
    assert rm["losses"] == rb["losses"], (rm["losses"], rb["losses"])
    for i, (dm, db) in enumerate(zip(rm["detections"], rb["detections"])):
        for field in ("boxes", "scores", "classes"):
            assert dm[field] == db[field], f"image {i}: {field} differ"
    assert len(rm["detections"]) == len(rb["detections"]) == len(G.BATCH_SPEC)
    assert any(d["scores"] for d in rb["detections"]), "no detections at all: the comparison would be empty"
