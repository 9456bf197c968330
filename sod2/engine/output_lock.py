"""
One training per output folder.

:func:`lock_output_dir` takes an exclusive ``fcntl.flock`` on ``<output_dir>/.sod2-train.lock``
for the lifetime of a training run (the process that holds it: the tool's main process,
which waits for its workers). A second training into the same folder stops at once with
one line naming the folder and the process that holds it (:class:`OutputDirBusy`, exit
status 2 in ``tools/lazyconfig_train_net.py``) instead of overwriting the first run's
checkpoints, interleaving ``metrics.json`` and moving ``last_checkpoint`` to the other run.
The kernel releases the lock when the process ends in any way (exit, exception, SIGKILL),
so a stale lock file never blocks a later run; the file stays and holds the last holder's
pid and host. ``flock`` locks are local to a machine on most network filesystems, so a
folder shared by two machines is only protected against runs on the same machine.

:func:`check_output_dir` refuses an output folder that is a file, or a folder (or the
nearest existing parent of one to be created) in which no file can be created.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
from typing import Dict, Iterator, Optional

from ..errors import UserError

__all__ = ["LOCK_NAME", "OutputDirBusy", "lock_output_dir", "check_output_dir", "unwritable_reason"]

LOCK_NAME = ".sod2-train.lock"
_HELD: Dict[str, int] = {}  # realpath of the folder -> fd of its lock file, held by this process


class OutputDirBusy(UserError):
    """Another process trains into the same output folder."""


def unwritable_reason(path: str) -> Optional[str]:
    """Why files cannot be created in the folder ``path`` (or in the nearest existing parent
    of a folder still to be created), or None when they can. Tried for real (a temporary
    file is created and removed): permission bits say nothing to root or on read-only
    mounts."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return f"{probe} is a file, so the folder cannot be created"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sod2-write-test-", dir=probe)
    except OSError as e:
        return f"{probe} is not writable ({e.strerror or type(e).__name__})"
    os.close(fd)
    os.remove(tmp)
    return None


def check_output_dir(path: str, key: str = "train.output_dir") -> str:
    """Return ``path`` when it can be used as an output folder, else raise :class:`UserError`
    naming ``key``: it is a file, or it (or its nearest existing parent) is not writable."""
    if not path:
        raise UserError(f"{key} is empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{key}={path}: exists and is not a folder")
    problem = unwritable_reason(path)
    if problem:
        raise UserError(f"{key}={path}: {problem}")
    return path


@contextlib.contextmanager
def lock_output_dir(path: str) -> Iterator[str]:
    """Hold the training lock of the output folder ``path`` (created if needed) for the
    ``with`` block; re-entrant within one process.

    Raises:
        OutputDirBusy: another process holds it; the message names the folder and that
            process (pid and host).
    """
    os.makedirs(path, exist_ok=True)
    real = os.path.realpath(path)
    if real in _HELD:
        yield path
        return
    lock_file = os.path.join(real, LOCK_NAME)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise OutputDirBusy(f"train.output_dir={path} is in use by another training ({holder}); "
                            f"wait for it to finish or choose another train.output_dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[real] = fd
    try:
        yield path
    finally:
        del _HELD[real]
        os.close(fd)  # releases the flock
