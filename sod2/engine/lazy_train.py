"""
LazyConfig training and evaluation, as ``tools/lazyconfig_train_net.py`` runs them.

Detectron2's training semantics (``SimpleTrainer``/``AMPTrainer`` and its hooks,
``DetectionCheckpointer``, ``launch``) with what sod2 configs need on top:

* ``train.device = "auto"`` picks CUDA when available, else the CPU; on the CPU,
  ``--num-gpus N`` starts N processes that train with DDP over gloo;
* ``dataloader.evaluator`` may be one evaluator or a list;
* evaluation results are printed as tables by the evaluators and as Detectron2
  ``copypaste:`` lines, and written to ``metrics.json`` with the training metrics.
"""
from __future__ import annotations

import logging
from typing import Dict, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate
from detectron2.engine import (AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks)
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from omegaconf import OmegaConf

logger = logging.getLogger("detectron2")

__all__ = ["resolve_device", "do_test", "do_train", "setup", "main"]


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

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    ddp_kwargs = dict(cfg.train.get("ddp", {}))
    if cfg.train.device == "cpu":
        ddp_kwargs["device_ids"] = None  # DDP on CPU modules takes no device ids (gloo)
    model = create_ddp_model(model, **ddp_kwargs)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        # EvalHook also puts the results into the event storage (metrics.json, tensorboard)
        hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
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
    """Load the config file, apply ``key=value`` overrides, resolve the device, set up logging."""
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
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
