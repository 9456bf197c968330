"""
LazyConfig training and evaluation, as ``tools/lazyconfig_train_net.py`` runs them.

Detectron2's training semantics (``SimpleTrainer``/``AMPTrainer`` and its hooks,
``DetectionCheckpointer``, ``launch``) with what sod2 configs need on top:

* ``train.device = "auto"`` picks CUDA when available, else the CPU; on the CPU,
  ``--num-gpus N`` starts N processes that train with DDP over gloo;
* ``dataloader.evaluator`` may be one evaluator or a list;
* evaluation results are printed as tables by the evaluators and as Detectron2
  ``copypaste:`` lines, and written to ``metrics.json`` with the training metrics;
* ``key=value`` overrides are checked (:func:`load_config`): a key the config does not
  have is refused with the closest existing key (``+key=value`` adds one on purpose), and
  so is a value of another type than the config's (``train.max_iter=abc``);
* a config that leaves ``train.output_dir`` unset (or at the common default
  ``./output``) writes to ``./output/<config file name>`` (:func:`derive_output_dir`).
"""
from __future__ import annotations

import difflib
import inspect
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import OmegaConf

from ..errors import UserError

logger = logging.getLogger("detectron2")

__all__ = ["resolve_device", "do_test", "do_train", "setup", "main", "ConfigError", "load_config",
           "apply_checked_overrides", "derive_output_dir"]


class ConfigError(UserError):
    """A config file or ``key=value`` override that cannot be used; the message is one line
    naming the file or the override."""


def _parse_override(o: str) -> Tuple[str, Any, bool]:
    """(key, value, add) of ``key=value``; a leading ``+`` (``add``) adds a new key.

    Values are parsed as Detectron2's ``LazyConfig.apply_overrides`` parses them (Hydra's
    override grammar when Hydra is installed, else Python literals)."""
    add = o.startswith("+")
    text = o.lstrip("+")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {o!r}: expected key=value")
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError:  # pragma: no cover - Hydra comes with Detectron2's dependencies
        import ast

        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        return key.strip(), value, add
    try:
        parsed = OverridesParser.create().parse_overrides([text])[0]
    except Exception as e:  # Hydra's OverrideParseException (message spans lines)
        raise ConfigError(f"override {o!r}: cannot parse it ({str(e).splitlines()[0]})") from None
    if parsed.is_delete():
        raise ConfigError(f"override {o!r}: deleting keys is not supported")
    return parsed.key_or_group, parsed.value(), add


def _closest(word: str, candidates: Sequence[str], prefix: str, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=cutoff)
    return f" (did you mean {prefix + close[0]!r}?)" if close else ""


def _target_params(node) -> Optional[List[str]]:
    """Keyword names the ``_target_`` of a LazyCall node accepts; None when it takes
    ``**kwargs`` or cannot be inspected."""
    target = node.get("_target_")
    if isinstance(target, str):
        try:
            from detectron2.utils.registry import locate

            target = locate(target)
        except Exception:
            return None
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    # a class whose __init__ passes **kwargs on (a mixin) takes what the next __init__ in
    # its MRO takes: follow the chain to the first __init__ without **kwargs
    inits = ([c.__dict__["__init__"] for c in target.__mro__ if "__init__" in c.__dict__ and c is not object]
             if inspect.isclass(target) else [target])
    names: List[str] = []
    for fn in inits:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in params if p.kind in named and p.name != "self"]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return names
    return None  # **kwargs all the way: anything may be accepted


def _type_problem(old: Any, new: Any) -> Optional[str]:
    """What ``new`` should be to replace ``old`` (None when it fits)."""
    if new is None or old is None:
        return None
    if isinstance(old, bool):
        return None if isinstance(new, bool) else "true or false"
    if isinstance(old, int):
        return None if isinstance(new, int) and not isinstance(new, bool) else "an integer"
    if isinstance(old, float):
        return None if isinstance(new, (int, float)) and not isinstance(new, bool) else "a number"
    if OmegaConf.is_list(old) or isinstance(old, (list, tuple)):
        return None if isinstance(new, (list, tuple)) else "a list such as [1,2]"
    if OmegaConf.is_dict(old):
        return None if isinstance(new, (dict, str)) else "a config (override its keys instead)"
    return None


def _check_override(cfg, o: str, key: str, value: Any, add: bool) -> Optional[str]:
    """Raise ConfigError for an override the config cannot take; return a warning (or None)."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        here = ".".join(parts[:i + 1])
        parent = ".".join(parts[:i])
        if not OmegaConf.is_dict(node):
            raise ConfigError(f"override {o!r}: {parent!r} is {type(node).__name__} "
                              f"{_short(node)}, not a config with keys")
        if part in node:
            try:
                node = node[part]
            except Exception:  # an interpolation that does not resolve here: leave it be
                return None
            continue
        if add:
            return None
        prefix = parent + "." if parent else ""
        keys = [k for k in node.keys() if k != "_target_"]
        if i < len(parts) - 1 or i == 0:
            raise ConfigError(f"override {o!r}: the config has no key {here!r}"
                              f"{_closest(part, keys, prefix)}; write +{o} to add it")
        if "_target_" in node:
            params = _target_params(node)
            if params is not None and part not in params:
                name = getattr(node["_target_"], "__qualname__", str(node["_target_"]))
                raise ConfigError(f"override {o!r}: {parent!r} ({name}) takes no argument "
                                  f"{part!r}{_closest(part, sorted(set(params + keys)), prefix)}")
            return None
        close = _closest(part, keys, prefix, cutoff=0.8)
        if close:
            raise ConfigError(f"override {o!r}: the config has no key {here!r}{close}; "
                              f"write +{o} to add it")
        return f"override {o!r} adds {here!r}, which the config did not have"
    want = _type_problem(node, value)
    if want:
        now = "a config" if OmegaConf.is_dict(node) else _short(node)
        raise ConfigError(f"override {o!r}: {key} is {now} in the config, so the value "
                          f"must be {want}, got {_short(value)}")
    return None


def _short(v: Any, limit: int = 60) -> str:
    text = repr(OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def apply_checked_overrides(cfg, overrides: Sequence[str], warn: bool = True):
    """Apply ``key=value`` overrides like ``LazyConfig.apply_overrides``, after checking them.

    Refused (:class:`ConfigError`): a key under a missing key or at the top level that the
    config does not have; an argument that a LazyCall's target does not take; a new key of
    a plain dict that is close to an existing one (a typo such as ``train.max_iters``); a
    value of another type than the existing one (an integer, number, boolean, list or
    config; ``None`` is always accepted). A leading ``+`` adds a key without these checks.
    Other new keys of plain dicts (``train.float32_precision``) are added with a warning.
    """
    for o in overrides:
        key, value, add = _parse_override(o)
        note = _check_override(cfg, o, key, value, add)
        if note and warn:
            logger.warning(note)
        OmegaConf.update(cfg, key, value, merge=True)
    return cfg


def load_config(config_file: str, overrides: Sequence[str] = (), warn: bool = True):
    """Load a LazyConfig file and apply checked overrides (:func:`apply_checked_overrides`),
    then a ``slicing`` block if the config or the overrides have one (``+slicing.size=800
    +slicing.overlap=0.2`` evaluates any config with sliced inference:
    :func:`sod2.inference.config.apply_slicing_block`).

    Raises:
        ConfigError: the file does not exist, or an override or the slicing block is refused.
    """
    from sod2.inference.config import apply_slicing_block

    if not os.path.isfile(config_file):
        raise ConfigError(f"--config-file {config_file}: no such file")
    cfg = apply_checked_overrides(LazyConfig.load(config_file), overrides, warn=warn)
    try:
        return apply_slicing_block(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


DEFAULT_OUTPUT_DIRS = (None, "", "./output", "output")


def derive_output_dir(cfg, config_file: str, overrides: Sequence[str] = ()) -> Optional[str]:
    """Set ``train.output_dir`` to ``./output/<config file name>`` when the config leaves it
    unset or at the common default ``./output`` (so that two configs never share an output
    folder) and no override sets it. Returns the output folder."""
    train = cfg.get("train")
    if train is None:
        return None
    explicit = any(o.lstrip("+").partition("=")[0].strip() == "train.output_dir" for o in overrides)
    if not explicit and train.get("output_dir") in DEFAULT_OUTPUT_DIRS:
        stem = os.path.splitext(os.path.basename(config_file))[0]
        train.output_dir = os.path.join("./output", stem)
    return train.get("output_dir")


def resolve_device(cfg) -> str:
    """Replace ``train.device = "auto"`` by "cuda" or "cpu"; return the device."""
    dev = cfg.train.get("device", "auto")
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={dev!r} but CUDA is not available; use train.device=cpu "
                           "or train.device=auto")
    cfg.train.device = dev
    return dev


def _evaluator(cfg):
    ev = cfg.dataloader.get("evaluator")
    if ev is None:
        return None
    if OmegaConf.is_list(ev) or isinstance(ev, (list, tuple)):
        return DatasetEvaluators([instantiate(e) for e in ev])
    return instantiate(ev)


def do_test(cfg, model) -> Dict:
    """Run inference on ``dataloader.test`` and evaluate with ``dataloader.evaluator``."""
    evaluator = _evaluator(cfg)
    if evaluator is None:
        logger.info("No dataloader.evaluator in the config: skipping evaluation")
        return {}
    ret = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
    if comm.is_main_process() and ret:
        print_csv_format(ret)
    return ret


def do_train(args, cfg) -> None:
    """Train ``cfg.model`` with ``cfg.dataloader.train``, ``cfg.optimizer``, ``cfg.lr_multiplier``."""
    model = instantiate(cfg.model)
    logger.info("Model:\n%s", model)
    model.to(cfg.train.device)
    # sod2 training recipe (train.ema / train.no_aug / train.multiscale; all off by default)
    from .ema import EMACheckpointer, build_model_ema
    from .hooks import build_recipe_hooks
    ema = build_model_ema(cfg, model)  # None unless train.ema.enabled

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    ddp_kwargs = dict(cfg.train.get("ddp", {}))
    if cfg.train.device == "cpu":
        ddp_kwargs["device_ids"] = None  # DDP on CPU modules takes no device ids (gloo)
    model = create_ddp_model(model, **ddp_kwargs)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    # with EMA, checkpoints hold the EMA weights as "model" and evaluation uses them
    checkpointer = (DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer) if ema is None
                    else EMACheckpointer(model, cfg.train.output_dir, ema=ema, trainer=trainer))
    eval_model = model if ema is None else ema.module
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        *build_recipe_hooks(cfg, ema),  # after the optimizer step, before checkpoints and eval
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        # EvalHook also puts the results into the event storage (metrics.json, tensorboard)
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, eval_model)),
        hooks.PeriodicWriter(default_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period) if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    if args.resume and checkpointer.has_checkpoint():
        # the checkpoint stores the iteration that just finished
        start_iter = trainer.iter + 1
    else:
        start_iter = 0
    trainer.train(start_iter, cfg.train.max_iter)


def setup(args):
    """Load the config file, apply checked ``key=value`` overrides (:func:`load_config`),
    derive ``train.output_dir`` if unset (:func:`derive_output_dir`), resolve the device,
    set up logging."""
    cfg = load_config(args.config_file, args.opts)
    derive_output_dir(cfg, args.config_file, args.opts)
    resolve_device(cfg)
    default_setup(cfg, args)
    # sod2's own loggers (evaluation tables, dataset warnings) go to the same log
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="sod2", abbrev_name="sod2")
    return cfg


def _leave_process_group() -> None:
    """After a successful multi-process run: wait for every process, then close the group, so
    that no process exits while a peer still holds it (gloo can abort in its destructor)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        comm.synchronize()
        torch.distributed.destroy_process_group()


def worker_main(args) -> Optional[Dict]:
    """:func:`main` as the function each process of ``launch`` runs.

    A process of a multi-process run (``--num-gpus 2`` ...) that finished without error
    leaves the group (:func:`main`), flushes its logs and exits at once with status 0
    instead of through the interpreter's shutdown: gloo's C++ threads can abort a process in
    their destructors there ("terminate called without an active exception", SIGABRT), rarely
    and after all the work is done, even when the group was destroyed first, and ``launch``
    would report the run as failed. A single-process run returns as :func:`main` does.
    """
    distributed = comm.get_world_size() > 1
    result = main(args)
    if distributed:
        import sys

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result


def main(args) -> Optional[Dict]:
    cfg = setup(args)
    result = None
    if args.eval_only:
        model = instantiate(cfg.model)
        model.to(cfg.train.device)
        model = create_ddp_model(model, **({"device_ids": None} if cfg.train.device == "cpu" else {}))
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        result = do_test(cfg, model)
    else:
        do_train(args, cfg)
    _leave_process_group()
    return result
