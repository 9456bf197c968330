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
* ``--eval-only --onnx FILE`` evaluates an exported model (:class:`sod2.inference.OnnxModel`) in
  place of the config's, with the config's test set, evaluator and slicing
  (:func:`check_onnx_run`);
* a config that leaves ``train.output_dir`` unset (or at the common default
  ``./output``) writes to ``./output/<config file name>`` (:func:`derive_output_dir`).
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import OmegaConf

from ..errors import UserError
from .checkpoint import AtomicDetectionCheckpointer, load_for_inference

logger = logging.getLogger("detectron2")

__all__ = ["resolve_device", "do_test", "do_train", "setup", "main", "worker_main", "run_tool",
           "ConfigError", "load_config", "apply_checked_overrides", "derive_output_dir",
           "NonFiniteLossError", "Trainer", "AMPTrainerFinite"]


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
        ConfigError: the file does not exist, is not a .py/.yaml config or does not parse,
            or an override or the slicing block is refused.
    """
    from sod2.inference.config import apply_slicing_block

    if not os.path.isfile(config_file):
        raise ConfigError(f"--config-file {config_file}: no such file")
    if not config_file.endswith((".py", ".yaml", ".yml")):
        raise ConfigError(f"--config-file {config_file}: not a config file (a LazyConfig .py or .yaml)")
    try:
        loaded = LazyConfig.load(config_file)
    except SyntaxError as e:
        raise ConfigError(f"--config-file {config_file}: line {e.lineno}: {e.msg}") from None
    except ValueError as e:  # e.g. a YAML file that is not a mapping
        raise ConfigError(f"--config-file {config_file}: {str(e).splitlines()[0]}") from None
    cfg = apply_checked_overrides(loaded, overrides, warn=warn)
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
        raise ConfigError(f"train.device={dev!r} but CUDA is not available; use train.device=cpu "
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


def check_onnx_run(cfg, onnx_file: str, hand_over: bool = True):
    """The checks of ``--eval-only --onnx FILE`` (:func:`sod2.engine.preflight.check_run`'s,
    with the exported file in place of the checkpoint), then the model to evaluate: an
    :class:`sod2.inference.OnnxModel`, wrapped as the config's model when that is sliced.

    Raises:
        UserError: the file cannot be run (missing, damaged, metadata missing or not its
            own, onnxruntime not installed), another class count or channel order than the
            config's, or any of check_run's refusals.
    """
    import copy

    from sod2.inference.onnx_model import OnnxModel, check_against_config, like_config_model

    from .preflight import check_run

    model = OnnxModel(onnx_file)
    check_against_config(model, cfg, "--config-file")
    if cfg.train.get("init_checkpoint"):
        logger.warning("--onnx %s is evaluated; train.init_checkpoint=%s is not used", onnx_file,
                       cfg.train.init_checkpoint)
    checked = copy.deepcopy(cfg)
    checked.train.init_checkpoint = onnx_file  # check_run's --eval-only check: the file evaluated exists
    check_run(checked, eval_only=True, hand_over=hand_over)
    return like_config_model(model, cfg.model)


def _onnx_model(cfg, onnx_file: str):
    """The model of an already checked ``--onnx`` run (:func:`check_onnx_run`)."""
    from sod2.inference.onnx_model import OnnxModel, like_config_model

    return like_config_model(OnnxModel(onnx_file), cfg.model)


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


class NonFiniteLossError(FloatingPointError):
    """A training loss that became NaN or infinite; the message is one line:
    Detectron2's ``Loss became infinite or NaN at iteration=N!`` and the losses by name."""


def _loss_text(loss_dict) -> str:
    vals = {k: float(v.detach().float().cpu()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in loss_dict.items()}
    bad = [f"{k}={v}" for k, v in vals.items() if not math.isfinite(v)]
    good = [f"{k}={v:.4g}" for k, v in vals.items() if math.isfinite(v)]
    if not bad:
        return "the non-finite loss is in another process"
    return "non-finite: " + ", ".join(bad) + ("; finite: " + ", ".join(good) if good else "")


class _NonFiniteLossFilter(logging.Filter):
    """Turns the trainer's "Exception during training:" record with a traceback into one
    line when the exception is a :class:`NonFiniteLossError`."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, NonFiniteLossError):
            record.msg, record.args = "Training stopped: %s", (str(exc),)
            record.exc_info = record.exc_text = None
        return True


class _FiniteLossMixin:
    """Detectron2's trainer, with a NaN/inf loss raised as :class:`NonFiniteLossError`
    (one line naming the losses) and logged without a traceback."""

    def _write_metrics(self, loss_dict, data_time: float, prefix: str = "", iter: Optional[int] = None) -> None:
        cur = self.iter if iter is None else iter
        if (cur + 1) % self.gather_metric_period:
            return
        try:
            SimpleTrainer.write_metrics(loss_dict, data_time, cur, prefix)
        except FloatingPointError as e:  # raised by Detectron2 on the main process
            first = str(e).splitlines()[0] if str(e) else f"Loss became infinite or NaN at iteration={cur}!"
            raise NonFiniteLossError(f"{first} {_loss_text(loss_dict)}") from None

    def train(self, start_iter: int, max_iter: int):
        filt = _NonFiniteLossFilter()
        train_logger = logging.getLogger("detectron2.engine.train_loop")
        train_logger.addFilter(filt)
        try:
            return super().train(start_iter, max_iter)
        finally:
            train_logger.removeFilter(filt)


class Trainer(_FiniteLossMixin, SimpleTrainer):
    """``SimpleTrainer`` with one-line non-finite loss errors (:class:`NonFiniteLossError`)."""


class AMPTrainerFinite(_FiniteLossMixin, AMPTrainer):
    """``AMPTrainer`` with one-line non-finite loss errors (:class:`NonFiniteLossError`)."""


def do_train(args, cfg) -> None:
    """Train ``cfg.model`` with ``cfg.dataloader.train``, ``cfg.optimizer``, ``cfg.lr_multiplier``."""
    model = instantiate(cfg.model)
    logger.info("Model:\n%s", model)
    model.to(cfg.train.device)
    # sod2 training recipe (train.ema / train.no_aug / train.multiscale; all off by default)
    from .ema import EMACheckpointer, build_model_ema
    from .hooks import NoAugTail, build_recipe_hooks, no_aug_settings, strong_augmentation_switch
    ema = build_model_ema(cfg, model)  # None unless train.ema.enabled
    # the no-aug tail is handed the training dataset itself (instantiated first, then the loader)
    no_aug = no_aug_settings(cfg)
    switches = [strong_augmentation_switch(cfg)] if no_aug.get("start_iter") is not None else []
    recipe_hooks = build_recipe_hooks(cfg, ema, switches)
    for h in recipe_hooks:
        if isinstance(h, NoAugTail):
            h.check_model(model)  # before anything trains: a model without set_l1_loss is one line

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    ddp_kwargs = dict(cfg.train.get("ddp", {}))
    if cfg.train.device == "cpu":
        ddp_kwargs["device_ids"] = None  # DDP on CPU modules takes no device ids (gloo)
    model = create_ddp_model(model, **ddp_kwargs)
    trainer = (AMPTrainerFinite if cfg.train.amp.enabled else Trainer)(model, train_loader, optim)
    # with EMA, checkpoints hold the EMA weights as "model" and evaluation uses them; both
    # checkpointers write atomically (sod2.engine.checkpoint)
    checkpointer = (AtomicDetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer) if ema is None
                    else EMACheckpointer(model, cfg.train.output_dir, ema=ema, trainer=trainer))
    eval_model = model if ema is None else ema.module
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        *recipe_hooks,  # after the optimizer step, before checkpoints and eval
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


WORKER_ERRORS_ENV = "SOD2_WORKER_ERRORS"
"""Set by :func:`run_tool` for a multi-process run: the folder where a worker writes the
one-line message of a :class:`UserError` or :class:`NonFiniteLossError` before it exits."""


def worker_main(args) -> Optional[Dict]:
    """:func:`main` as the function each process of ``launch`` runs.

    A process of a multi-process run (``--num-gpus 2`` ...) that finished without error
    leaves the group (:func:`main`), flushes its logs and exits at once with status 0
    instead of through the interpreter's shutdown: gloo's C++ threads can abort a process in
    their destructors there ("terminate called without an active exception", SIGABRT), rarely
    and after all the work is done, even when the group was destroyed first, and ``launch``
    would report the run as failed. A process that stops on a :class:`UserError` or a
    non-finite loss writes its message to ``$SOD2_WORKER_ERRORS/rank<r>.txt`` and exits with
    status 2 (1 for the loss), so that :func:`run_tool` prints it once, as one line. A
    single-process run returns (or raises) as :func:`main` does.
    """
    distributed = comm.get_world_size() > 1
    try:
        result = main(args)
    except (UserError, NonFiniteLossError) as e:
        errors_dir = os.environ.get(WORKER_ERRORS_ENV)
        if not (distributed and errors_dir):
            raise
        with open(os.path.join(errors_dir, f"rank{comm.get_rank()}.txt"), "w") as f:
            f.write(f"{2 if isinstance(e, UserError) else 1}\n{e}")
        _exit_now(2 if isinstance(e, UserError) else 1)
    if distributed:
        _exit_now(0)
    return result


def _exit_now(status: int) -> None:
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_tool(args) -> int:
    """What ``tools/lazyconfig_train_net.py`` runs: load and check everything in this process
    (:func:`load_config`, :func:`sod2.engine.preflight.check_run`), take the output folder's
    training lock (:mod:`sod2.engine.output_lock`; training only, on machine 0), then
    ``launch`` :func:`worker_main`. Returns the exit status: 0, 2 for a :class:`UserError`
    (printed as ``error: <message>``), 1 for a non-finite loss (printed the same way).
    """
    import shutil
    import sys
    import tempfile

    from detectron2.engine import launch

    from .output_lock import lock_output_dir
    from .preflight import check_run

    def fail(status: int, message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return status

    world = args.num_gpus * args.num_machines
    onnx = getattr(args, "onnx", None)
    if onnx and not args.eval_only:
        return fail(2, f"--onnx {onnx} evaluates an exported model: add --eval-only")
    if onnx and world > 1:
        return fail(2, f"--onnx {onnx} runs in one process (ONNX Runtime uses every core): drop --num-gpus/"
                       "--num-machines")
    try:
        cfg = load_config(args.config_file, args.opts, warn=False)
        derive_output_dir(cfg, args.config_file, args.opts)
        resolve_device(cfg)
        if onnx:
            check_onnx_run(cfg, onnx, hand_over=True)
        else:
            check_run(cfg, eval_only=args.eval_only, hand_over=world == 1)
    except UserError as e:
        return fail(2, str(e))
    args.sod2_checked = True  # main() in the workers skips check_run
    errors_dir = tempfile.mkdtemp(prefix="sod2-worker-errors-")
    os.environ[WORKER_ERRORS_ENV] = errors_dir
    try:
        with contextlib.ExitStack() as stack:
            if not args.eval_only and args.machine_rank == 0:
                stack.enter_context(lock_output_dir(cfg.train.output_dir))
            try:
                launch(worker_main, args.num_gpus, num_machines=args.num_machines,
                       machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
            except UserError as e:
                return fail(2, str(e))
            except NonFiniteLossError as e:
                return fail(1, str(e))
            except Exception:
                reports = sorted(os.listdir(errors_dir))
                if not reports:
                    raise
                with open(os.path.join(errors_dir, reports[0])) as f:
                    status, _, message = f.read().partition("\n")
                return fail(int(status), message)
    except UserError as e:  # the lock is held by another run
        return fail(2, str(e))
    finally:
        os.environ.pop(WORKER_ERRORS_ENV, None)
        shutil.rmtree(errors_dir, ignore_errors=True)
    return 0


def main(args) -> Optional[Dict]:
    """Train, or evaluate with ``--eval-only``, in this process (one of ``launch``'s).

    Called directly (not through :func:`run_tool`), it runs
    :func:`sod2.engine.preflight.check_run` first and, for a single-process training, holds
    the output folder's lock. ``--eval-only`` loads ``train.init_checkpoint`` strictly
    (:func:`sod2.engine.checkpoint.load_for_inference`); with ``args.onnx`` the exported file
    is evaluated instead (:func:`check_onnx_run`)."""
    from .output_lock import lock_output_dir
    from .preflight import check_run

    onnx = getattr(args, "onnx", None)
    if onnx and not args.eval_only:
        raise UserError(f"--onnx {onnx} evaluates an exported model: add --eval-only")
    if not getattr(args, "sod2_checked", False):
        cfg = load_config(args.config_file, args.opts, warn=False)
        derive_output_dir(cfg, args.config_file, args.opts)
        if not onnx:
            check_run(cfg, eval_only=args.eval_only, hand_over=True)
    cfg = setup(args)
    result = None
    with contextlib.ExitStack() as stack:
        if onnx:  # the exported file replaces the config's model (checked here when main() runs alone)
            model = check_onnx_run(cfg, onnx, hand_over=True) if not getattr(args, "sod2_checked", False) else \
                _onnx_model(cfg, onnx)
            result = do_test(cfg, model)
        elif args.eval_only:
            model = instantiate(cfg.model)
            model.to(cfg.train.device)
            model = create_ddp_model(model, **({"device_ids": None} if cfg.train.device == "cpu" else {}))
            load_for_inference(model, cfg.train.init_checkpoint)
            result = do_test(cfg, model)
        else:
            if comm.get_world_size() == 1:
                stack.enter_context(lock_output_dir(cfg.train.output_dir))
            do_train(args, cfg)
    _leave_process_group()
    return result
