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

RT-DETR (lyuwenyu/RT-DETR v1 ``rtdetr_pytorch``, e.g. ``rtdetr_r50vd_6x_coco_from_paddle.pth``)
-> :class:`sod2.modeling.meta_arch.RTDETR` (``configs/rtdetr/rtdetr_r{18,34,50,50_m,101}vd_coco.py``):

* which weights: an official checkpoint holds ``{"ema": {"module": state_dict, "updates": n}}``
  and/or ``{"model": state_dict}``; when both are there the EMA weights are taken, because they
  are the ones the reference evaluates and publishes (``det_solver.py``: ``module =
  self.ema.module if self.ema else self.model``; its ``export_onnx.py`` and fine-tuning
  ``load_tuning_state`` also prefer ``ema``); a bare state dict is accepted too;
* ``backbone.*`` (PResNet) -> ``backbone.*`` of :class:`~sod2.modeling.backbone.ResNetVd` with
  :func:`~sod2.modeling.backbone.presnet_key_to_sod2`;
* ``encoder.*`` (HybridEncoder) keeps its names;
* the decoder: ``decoder.input_proj.<i>.conv.weight`` -> ``decoder.input_proj.<i>.weight``
  (Detectron2's ``Conv2d`` holds its ``norm``; ``decoder.input_proj.<i>.norm.*`` keeps),
  ``decoder.decoder.layers.*`` -> ``decoder.layers.*``, ``decoder.enc_{output,score_head,
  bbox_head}.*`` -> ``decoder.query_selection.enc_*``, ``decoder.denoising_class_embed.weight``
  -> ``denoising.class_embed.weight`` (the meta-architecture's denoising module);
  ``query_pos_head``, ``dec_score_head``, ``dec_bbox_head`` keep their names;
* dropped: ``decoder.anchors``, ``decoder.valid_mask`` and ``encoder.pos_embed<i>``, should a
  checkpoint hold them (the v1 code keeps them out of its state dict; RT-DETRv2's decoder
  registers the anchors as persistent buffers): they are not weights but the anchors and the
  sine position embedding precomputed for a 640x640 input, which sod2 recomputes for its
  ``eval_spatial_size`` in non-persistent buffers.

PResNet ImageNet weights (the Paddle-converted ``ResNet{18,34}_vd_pretrained_from_paddle.pth``,
``ResNet50_vd_ssld_v2_pretrained_from_paddle.pth``, ``ResNet101_vd_ssld_pretrained_from_paddle
.pth`` that the reference's ``PResNet(pretrained=True)`` loads with a strict
``load_state_dict``): a bare PResNet state dict (``conv1.conv1_1.conv.weight``,
``res_layers.<i>.blocks.<j>...``, no classifier) -> ``backbone.*`` of sod2's RT-DETR, for
``train.init_checkpoint`` (the encoder and decoder are then reported missing: they start from
their initialisation, as in the reference).

sod2's own older checkpoints (``sod2-layout``): issue 16 moved each method into its package and
some of its tensors with it (:data:`LEGACY_RENAMES`). The loaders of sod2
(:func:`sod2.engine.checkpoint.load_for_inference`, the training checkpointers for
``train.init_checkpoint`` and ``--resume``) rename such keys on the fly, logging once which
rules applied; ``tools/convert_weights.py sod2-layout IN OUT`` rewrites a file for good.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

from ..data.io import atomic_path
from ..errors import UserError

__all__ = ["ConversionError", "convert_yolox_state_dict", "convert_rtdetr_state_dict",
           "convert_presnet_state_dict", "convert_checkpoint", "CONVERTERS", "detect_kind",
           "strip_module_prefix", "LEGACY_RENAMES", "upgrade_sod2_state_dict", "convert_sod2_layout"]

logger = logging.getLogger(__name__)


class ConversionError(UserError):
    """A checkpoint that cannot be converted (the message is one line)."""


def strip_module_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> Mapping[str, Any]:
    """``state_dict`` without ``prefix`` when every key has it (a model saved while wrapped in
    ``DistributedDataParallel``/``DataParallel``), else ``state_dict`` itself."""
    keys = list(state_dict.keys())
    if keys and all(isinstance(k, str) and k.startswith(prefix) for k in keys):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


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
    state_dict = strip_module_prefix(state_dict)
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


class ConvertedStateDict(dict):
    """A converted state dict that says which part of the checkpoint it came from
    (``source``, e.g. ``"ema.module"``)."""

    def __init__(self, *args, source: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.source = source


# ------------------------------------------------------------------------ RT-DETR
_RTDETR_ENCODER = re.compile(r"^(input_proj\.\d+\.[01]|encoder\.\d+\.layers\.\d+|lateral_convs\.\d+|"
                             r"downsample_convs\.\d+|(fpn|pan)_blocks\.\d+)\.\w[\w.]*$")
_RTDETR_DECODER_KEEP = re.compile(r"^(query_pos_head|dec_score_head\.\d+|dec_bbox_head\.\d+)\.\w[\w.]*$")
_RTDETR_QUERY_SELECTION = re.compile(r"^(enc_output|enc_score_head|enc_bbox_head)\.\w[\w.]*$")
# precomputed for the reference's eval size (640x640), not weights (module docstring)
_RTDETR_DROPPED = re.compile(r"^(decoder\.(anchors|valid_mask)|encoder\.pos_embed\d+)$")


def _presnet_key(key: str, what: str, full_key: str) -> str:
    from sod2.modeling.backbone.resnet_vd import presnet_key_to_sod2

    try:
        return presnet_key_to_sod2(key)
    except KeyError:
        raise ConversionError(f"unexpected key in the {what}: {full_key}") from None


def _rtdetr_key(key: str):
    """sod2's name for a reference RT-DETR key, or None for a dropped one."""
    what = "RT-DETR checkpoint"
    if _RTDETR_DROPPED.match(key):
        return None
    module, _, rest = key.partition(".")
    if module == "backbone" and rest:
        return "backbone." + _presnet_key(rest, what, key)
    if module == "encoder" and _RTDETR_ENCODER.match(rest):
        return key
    if module == "decoder":
        m = re.fullmatch(r"input_proj\.(\d+)\.(conv\.(weight|bias)|norm\.\w+)", rest)
        if m:
            tail = m.group(3) if m.group(3) else m.group(2)
            return f"decoder.input_proj.{m.group(1)}.{tail}"
        m = re.fullmatch(r"decoder\.(layers\.\d+\.\w[\w.]*)", rest)
        if m:
            return f"decoder.{m.group(1)}"
        if _RTDETR_QUERY_SELECTION.match(rest):
            return f"decoder.query_selection.{rest}"
        if rest == "denoising_class_embed.weight":
            return "denoising.class_embed.weight"
        if _RTDETR_DECODER_KEEP.match(rest):
            return key
    raise ConversionError(f"unexpected key in the {what}: {key}")


def convert_rtdetr_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename an official RT-DETR (PResNet + HybridEncoder + RTDETRTransformer) state dict to
    sod2's names (module docstring); tensors are kept as they are, the precomputed anchors
    and position embeddings are dropped. Raises :class:`ConversionError` naming the first
    key it does not know."""
    state_dict = strip_module_prefix(state_dict)
    if not any(k.startswith("backbone.") for k in state_dict) or \
            not any(k.startswith("decoder.") for k in state_dict):
        raise ConversionError("not an RT-DETR state dict (no 'backbone.*' and 'decoder.*' keys)")
    out = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise ConversionError(f"unexpected non-tensor entry in the RT-DETR checkpoint: {k}")
        new = _rtdetr_key(k)
        if new is not None:
            out[new] = v
    return out


def _rtdetr_checkpoint(ckpt) -> ConvertedStateDict:
    """The EMA weights when the checkpoint has them, else ``model``, else the checkpoint
    itself as a bare state dict (module docstring)."""
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f"not an RT-DETR checkpoint: a {type(ckpt).__name__}, expected a dict with "
                              "'ema' and/or 'model'")
    if "ema" in ckpt:
        ema = ckpt["ema"]
        if not isinstance(ema, Mapping) or not isinstance(ema.get("module"), Mapping):
            raise ConversionError("not an RT-DETR checkpoint: its 'ema' entry has no 'module' state dict")
        sd, source = ema["module"], "ema.module"
    elif "model" in ckpt:
        sd, source = ckpt["model"], "model"
        if not isinstance(sd, Mapping):
            raise ConversionError("not an RT-DETR checkpoint: its 'model' entry is not a state dict")
    else:
        sd, source = ckpt, "a bare state dict"
    return ConvertedStateDict(convert_rtdetr_state_dict(sd), source=source)


# ---------------------------------------------------------- PResNet (ImageNet)
def convert_presnet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename a reference PResNet-vd state dict (the Paddle-converted ImageNet weights: keys
    ``conv1.conv1_k.*`` and ``res_layers.<i>.blocks.<j>.*``) to ``backbone.*`` of sod2's
    RT-DETR. Raises :class:`ConversionError` naming the first key it does not know (a
    classifier, or an RT-DETR checkpoint's prefixed keys)."""
    state_dict = strip_module_prefix(state_dict)
    if not any(k.startswith("conv1.conv1_1.") for k in state_dict) or \
            not any(k.startswith("res_layers.") for k in state_dict):
        # (a whole RT-DETR checkpoint, with decoder.*, is named by convert_checkpoint)
        hint = " (an RT-DETR checkpoint? use 'rtdetr')" if any(k.startswith("backbone.") for k in state_dict) \
            and not any(k.startswith("decoder.") for k in state_dict) else ""
        raise ConversionError(f"not a PResNet state dict (no 'conv1.conv1_1.*' and 'res_layers.*' keys){hint}")
    out = {}
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise ConversionError(f"unexpected non-tensor entry in the PResNet checkpoint: {k}")
        out["backbone." + _presnet_key(k, "PResNet checkpoint", k)] = v
    return out


def _presnet_checkpoint(ckpt) -> ConvertedStateDict:
    if not isinstance(ckpt, Mapping):
        raise ConversionError(f"not a PResNet checkpoint: a {type(ckpt).__name__}, expected a state dict")
    if any(isinstance(ckpt.get(k), Mapping) for k in ("ema", "model")):
        raise ConversionError("not a PResNet state dict: it holds 'ema'/'model' entries")
    return ConvertedStateDict(convert_presnet_state_dict(ckpt), source="a bare state dict")


CONVERTERS: Dict[str, Callable] = {"yolox": _yolox_checkpoint, "rtdetr": _rtdetr_checkpoint,
                                   "presnet": _presnet_checkpoint}
_AUTHORS = {"yolox": "Megvii-BaseDetection/YOLOX (converted by sod2)",
            "rtdetr": "lyuwenyu/RT-DETR (converted by sod2)",
            "presnet": "lyuwenyu/RT-DETR PResNet ImageNet weights (converted by sod2)"}


def _state_dict_in(ckpt) -> Mapping:
    """The state dict a checkpoint most likely holds: ``ema.module``, ``model`` or itself."""
    if not isinstance(ckpt, Mapping):
        return {}
    for sd in ((ckpt.get("ema") or {}).get("module") if isinstance(ckpt.get("ema"), Mapping) else None,
               ckpt.get("model"), ckpt):
        if isinstance(sd, Mapping):
            return strip_module_prefix(sd)
    return {}


_KIND_NAMES = {"yolox": "a YOLOX", "rtdetr": "an RT-DETR", "presnet": "a PResNet (ImageNet)"}


def detect_kind(ckpt) -> Optional[str]:
    """Which official checkpoint ``ckpt`` looks like, by its keys: "yolox"
    (``backbone.backbone.*`` and ``head.*``), "rtdetr" (``backbone.*`` and ``decoder.*``),
    "presnet" (``conv1.conv1_1.*`` and ``res_layers.*``), "sod2" (already converted:
    ``backbone.bottom_up.*`` or sod2's ``__author__``), or None."""
    if isinstance(ckpt, Mapping) and "converted by sod2" in str(ckpt.get("__author__", "")):
        return "sod2"
    keys = [k for k in _state_dict_in(ckpt) if isinstance(k, str)]

    def has(prefix):
        return any(k.startswith(prefix) for k in keys)

    if has("backbone.backbone.") and has("head."):
        return "yolox"
    if has("backbone.") and has("decoder."):
        return "rtdetr"
    if has("conv1.conv1_1.") and has("res_layers."):
        return "presnet"
    if has("backbone.bottom_up.") or has("backbone.fpn_lateral"):
        return "sod2"
    return None


def _check_paths(src: str, dst: str) -> None:
    """Refuse, before the (possibly long) read: no input, an output that is the input or a
    folder, an output folder that cannot be written."""
    if not os.path.isfile(src):
        raise ConversionError(f"no such checkpoint file: {src}")
    if os.path.isdir(dst):
        raise ConversionError(f"output {dst} is a folder; give the converted file's name, e.g. "
                              f"{os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + '_sod2.pth')}")
    if os.path.exists(dst) and os.path.samefile(src, dst):
        raise ConversionError(f"output {dst} is the input file; write the converted checkpoint to another file")
    from sod2.engine.output_lock import unwritable_reason

    problem = unwritable_reason(os.path.dirname(os.path.abspath(dst)))
    if problem:
        raise ConversionError(f"cannot write {dst}: {problem}")


def _read_checkpoint(src: str, dst: str):
    """``torch.load(src)`` on CPU after :func:`_check_paths`; any failure is one ConversionError line."""
    _check_paths(src, dst)
    try:
        return torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        raise ConversionError(f"cannot read {src} as a PyTorch checkpoint: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}") from e


def convert_checkpoint(kind: str, src: str, dst: str) -> Dict[str, torch.Tensor]:
    """Read the official checkpoint ``src`` (torch.load on CPU), convert it with converter
    ``kind`` ("yolox", "rtdetr", "presnet") and save the Detectron2 checkpoint to ``dst``.
    Returns the new state dict (for "rtdetr" and "presnet" a :class:`ConvertedStateDict`
    whose ``source`` says which part of the checkpoint was converted).

    ``dst`` is written to a temporary sibling and renamed into place when complete
    (:func:`sod2.data.io.atomic_path`): a killed conversion leaves no partial file under
    the final name. Refused (:class:`ConversionError`, before reading ``src``): ``dst`` is
    ``src``, a folder, or in a folder that cannot be written. A checkpoint of another kind
    than ``kind`` is named (``looks like a YOLOX checkpoint; use `convert_weights.py yolox```).
    """
    if kind not in CONVERTERS:
        raise ConversionError(f"unknown checkpoint kind {kind!r}; known: {sorted(CONVERTERS)}")
    ckpt = _read_checkpoint(src, dst)
    try:
        sd = CONVERTERS[kind](ckpt)
    except ConversionError as e:
        seen = detect_kind(ckpt)
        if seen == kind or seen is None:
            raise
        if seen == "sod2":
            hint = "it is already a converted sod2 checkpoint: load it with train.init_checkpoint"
        else:
            hint = f"it looks like {_KIND_NAMES[seen]} checkpoint; use `convert_weights.py {seen}`"
        raise ConversionError(f"{e}; {hint}") from None
    try:
        with atomic_path(dst) as tmp:
            torch.save({"model": dict(sd), "__author__": _AUTHORS[kind], "matching_heuristics": False}, tmp)
    except OSError as e:
        raise ConversionError(f"cannot write {dst}: {e.strerror or e}") from None
    return sd


# Key moves of sod2's own checkpoints, by method (issue 16: each method in its package, off by
# one override; the state dict of a method switched off is its baseline's). Each rule is
# (regular expression on an old key, replacement); within a method the first matching rule wins.
LEGACY_RENAMES: Dict[str, Sequence[Tuple[str, str]]] = {
    # SR-TOD was a backbone wrapping the FPN (ReconstructionFPN); now the plain FPN is the
    # backbone and SR-TOD the model's feature hook.
    "SR-TOD (backbone.fpn.* -> backbone.*, backbone.{head,threshold,dgfe}.* -> feature_hook.*)": (
        (r"^backbone\.fpn\.", "backbone."),
        (r"^backbone\.(head|threshold|dgfe)\.", r"feature_hook.\1."),
    ),
    # Foreground Probing's probe sat inside the YOLOX head; now FGProbeYOLOX holds it.
    "Foreground Probing (head.probe.* -> probe.*)": ((r"^head\.probe\.", "probe."),),
    # Better Sampling's SR sat in RT-DETR's SetCriterion / in YOLOX; now in the BetterSampling module.
    "Better Sampling, RT-DETR (criterion.reweighting.* -> criterion.better_sampling.reweighting.*)": (
        (r"^criterion\.reweighting\.", "criterion.better_sampling.reweighting."),),
    "Better Sampling, YOLOX (reweighting.* -> better_sampling.reweighting.*)": (
        (r"^reweighting\.", "better_sampling.reweighting."),),
}
_LEGACY = {name: [(re.compile(p), r) for p, r in rules] for name, rules in LEGACY_RENAMES.items()}


def _legacy_key(rules, key: str) -> Optional[str]:
    for pattern, repl in rules:
        if pattern.search(key):
            return pattern.sub(repl, key, count=1)
    return None


def upgrade_sod2_state_dict(state_dict: Mapping[str, Any], model_keys: Optional[Iterable[str]] = None
                            ) -> Tuple[Dict[str, Any], List[str]]:
    """Rename the keys of an sod2 checkpoint saved before a layout change (:data:`LEGACY_RENAMES`).

    Args:
        state_dict: key -> tensor (any value is carried as is).
        model_keys: the state-dict keys of the model that will load it. Given, a method's rules
            apply only when the checkpoint has a key they rename into one the model has and the
            model lacks the old key (a checkpoint in today's layout, or of another model, is
            left alone). None (the converter, no model at hand): a method's rules apply when any
            key matches them.

    Returns:
        ``(new_state_dict, applied)``: the same order of entries, renamed where a rule applied;
        ``applied`` names the methods whose rules applied (empty: nothing changed).

    Raises:
        ConversionError: two keys would get the same name (a file holding both layouts).
    """
    keys = [k for k in state_dict if isinstance(k, str)]
    wanted = None if model_keys is None else set(model_keys)
    applied = []
    renames: Dict[str, str] = {}
    for name, rules in _LEGACY.items():
        hits = {k: n for k in keys if (n := _legacy_key(rules, k)) is not None}
        if wanted is not None:
            hits = {k: n for k, n in hits.items() if k not in wanted}
            if not any(n in wanted for n in hits.values()):
                continue
        if hits:
            applied.append(name)
            renames.update(hits)
    if not renames:
        return dict(state_dict), []
    out: Dict[str, Any] = {}
    for k, v in state_dict.items():
        n = renames.get(k, k)
        if n in out:
            raise ConversionError(f"the checkpoint holds both {n!r} and a key that renames to it ({k!r}): "
                                  "it mixes the old and the new sod2 layout")
        out[n] = v
    return out, applied


def convert_sod2_layout(src: str, dst: str) -> Tuple[Dict[str, Any], List[str]]:
    """Rewrite the sod2 checkpoint ``src`` in today's key layout to ``dst`` (atomically).

    The model weights (``"model"``) and, in an EMA training checkpoint, the training weights
    (``"ema"["train_model"]``) are renamed by :func:`upgrade_sod2_state_dict`. The optimizer and
    scheduler states and the iteration are dropped: the optimizer's state is stored by the
    position of each parameter, which the layout change may move, so resuming from the new
    file starts a new schedule from these weights (say ``train.init_checkpoint=<dst>``).
    Everything else is kept. Returns ``(model state dict, applied rule names)``.

    Raises:
        ConversionError: unreadable input, bad output path (as :func:`convert_checkpoint`), a
            file without a ``"model"`` state dict, or one already in today's layout.
    """
    ckpt = _read_checkpoint(src, dst)
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("model"), Mapping):
        raise ConversionError(f"{src} is not an sod2 training checkpoint (no 'model' state dict)")
    sd, applied = upgrade_sod2_state_dict(strip_module_prefix(ckpt["model"]))
    if not applied:
        raise ConversionError(f"{src} is already in today's sod2 layout: nothing to convert")
    out = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "scheduler", "iteration")}
    out["model"] = sd
    ema = ckpt.get("ema")
    if isinstance(ema, Mapping) and isinstance(ema.get("train_model"), Mapping):
        out["ema"] = {**ema, "train_model": upgrade_sod2_state_dict(strip_module_prefix(ema["train_model"]))[0]}
    try:
        with atomic_path(dst) as tmp:
            torch.save(out, tmp)
    except OSError as e:
        raise ConversionError(f"cannot write {dst}: {e.strerror or e}") from None
    return sd, applied
