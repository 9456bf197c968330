"""
Converters from official checkpoints to sod2's parameter names (``tools/convert_weights.py``
is the command line). Each converter maps a state dict and fails with one clear line
(:class:`ConversionError`) on anything it does not know; the result is a Detectron2
checkpoint ``{"model": state_dict, "__author__": ..., "matching_heuristics": False}`` that
``DetectionCheckpointer`` loads by exact names.

YOLOX (Megvii-BaseDetection/YOLOX ``yolox_<size>.pth``, ``{"model": state_dict, ...}``) ->
:class:`sod2.modeling.meta_arch.YOLOX` with a YOLOPAFPN (p3-p5) and a YOLOXHead:

* ``backbone.backbone.*`` -> ``backbone.bottom_up.*`` (CSPDarknet; a CSPLayer's ``m`` ->
  ``blocks``);
* the neck: ``lateral_conv0``/``reduce_conv1`` -> ``reduce_convs.p5/p4``, ``C3_p4``/``C3_p3`` ->
  ``td_blocks.p4/p3``, ``bu_conv2``/``bu_conv1`` -> ``bu_convs.p3/p4``, ``C3_n3``/``C3_n4`` ->
  ``bu_blocks.p4/p5``;
* the head's per-level lists ``head.<name>.<i>`` -> ``head.<name>.p<i+3>``.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, Mapping

import torch

__all__ = ["ConversionError", "convert_yolox_state_dict", "convert_checkpoint", "CONVERTERS"]


class ConversionError(ValueError):
    """A checkpoint that cannot be converted (the message is one line)."""


_YOLOX_NECK = {
    "lateral_conv0": "reduce_convs.p5", "reduce_conv1": "reduce_convs.p4",
    "C3_p4": "td_blocks.p4", "C3_p3": "td_blocks.p3",
    "bu_conv2": "bu_convs.p3", "bu_conv1": "bu_convs.p4",
    "C3_n3": "bu_blocks.p4", "C3_n4": "bu_blocks.p5",
}
_YOLOX_HEAD_LISTS = ("stems", "cls_convs", "reg_convs", "cls_preds", "reg_preds", "obj_preds")
_CSP_BLOCKS = re.compile(r"\.m\.(\d+)\.")
_HEAD_KEY = re.compile(r"^head\.(%s)\.(\d+)\.(.+)$" % "|".join(_YOLOX_HEAD_LISTS))


def _yolox_key(key: str) -> str:
    if key.startswith("backbone.backbone."):
        rest = key[len("backbone.backbone."):]
        if not re.match(r"^(stem|dark[2-5])\.", rest):
            raise ConversionError(f"unexpected key in the YOLOX checkpoint: {key}")
        return "backbone.bottom_up." + _CSP_BLOCKS.sub(r".blocks.\1.", rest)
    if key.startswith("backbone."):
        module, _, rest = key[len("backbone."):].partition(".")
        if module not in _YOLOX_NECK or not rest:
            raise ConversionError(f"unexpected key in the YOLOX checkpoint: {key}")
        return f"backbone.{_YOLOX_NECK[module]}." + _CSP_BLOCKS.sub(r".blocks.\1.", "." + rest)[1:]
    m = _HEAD_KEY.match(key)
    if m:
        return f"head.{m.group(1)}.p{int(m.group(2)) + 3}.{m.group(3)}"
    raise ConversionError(f"unexpected key in the YOLOX checkpoint: {key}")


def convert_yolox_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an official YOLOX (CSPDarknet + YOLOPAFPN + YOLOXHead) state dict to sod2's
    names; tensors are kept as they are. Raises :class:`ConversionError` naming the first
    key it does not know."""
    if not any(k.startswith("backbone.backbone.") for k in state_dict) or \
            not any(k.startswith("head.") for k in state_dict):
        raise ConversionError("not a YOLOX state dict (no 'backbone.backbone.*' and 'head.*' keys)")
    out = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise ConversionError(f"unexpected non-tensor entry in the YOLOX checkpoint: {k}")
        out[_yolox_key(k)] = v
    return out


def _yolox_checkpoint(ckpt) -> Dict[str, torch.Tensor]:
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f"not a YOLOX checkpoint: a {type(ckpt).__name__}, expected a dict with 'model'")
    sd = ckpt["model"] if "model" in ckpt else ckpt
    if not isinstance(sd, Mapping):
        raise ConversionError("not a YOLOX checkpoint: its 'model' entry is not a state dict")
    return convert_yolox_state_dict(sd)


CONVERTERS: Dict[str, Callable] = {"yolox": _yolox_checkpoint}
_AUTHORS = {"yolox": "Megvii-BaseDetection/YOLOX (converted by sod2)"}


def convert_checkpoint(kind: str, src: str, dst: str) -> Dict[str, torch.Tensor]:
    """Read the official checkpoint ``src`` (torch.load on CPU), convert it with converter
    ``kind`` ("yolox") and save the Detectron2 checkpoint to ``dst``. Returns the new
    state dict."""
    if kind not in CONVERTERS:
        raise ConversionError(f"unknown checkpoint kind {kind!r}; known: {sorted(CONVERTERS)}")
    if not os.path.isfile(src):
        raise ConversionError(f"no such checkpoint file: {src}")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        raise ConversionError(f"cannot read {src} as a PyTorch checkpoint: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e
    sd = CONVERTERS[kind](ckpt)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    torch.save({"model": sd, "__author__": _AUTHORS[kind], "matching_heuristics": False}, dst)
    return sd
