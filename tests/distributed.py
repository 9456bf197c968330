"""Helpers for the tests that run two gloo processes on one machine.

Gloo can abort a process in its destructors at interpreter exit ("terminate called without an
active exception"), rarely and only after all the work is done, even when the group was
destroyed first. A test checks what the processes computed, not how the C++ runtime tears
down, so a worker hands in its results, waits for its peer and leaves with ``os._exit(0)``
(no destructors run), as sod2's training tool does (``sod2.engine.lazy_train.worker_main``).
"""
import os
import socket
import sys

import torch.distributed as dist


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leave(queue=None) -> None:
    """End a worker process: flush ``queue`` (a multiprocessing queue the worker ``put`` its
    results on; its feeder thread must finish first), wait for every process of the group,
    flush the standard streams and exit with status 0 without running destructors."""
    if queue is not None:
        queue.close()
        queue.join_thread()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
