"""
File input/output shared by loaders, converters and tools.

* :func:`read_image` loads any image the supported datasets contain (8-bit colour,
  grayscale thermal frames, 16-bit sensor images) as an H x W x 3 uint8 array, with
  an error that names the file when it is missing or cannot be decoded.
* :func:`verify_image` checks that an image file is usable without loading it fully
  (header and end marker), or by decoding it (``level="full"``).
* :func:`atomic_path` / :func:`atomic_write_json` / :func:`atomic_write_text` write to
  a temporary sibling and rename it into place on success, so an interrupted
  conversion never leaves a partial output behind. The temporary name carries the host
  and process id (``.<name>.tmp-<host>-<pid>-<random>``); temporaries that a killed
  process left behind are removed by the next write of the same output
  (:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from typing import Any, Iterator, List, Optional, Tuple

import cv2
import numpy as np

# absolute: tools/evaluate_json.py loads this file on its own, outside the sod2.data package
from sod2.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["DataFormatError", "read_image", "to_uint8_rgb", "verify_image", "VERIFY_LEVELS",
           "relative_names", "atomic_path", "atomic_write_json", "atomic_write_text", "remove_stale_temporaries"]


class DataFormatError(UserError):
    """Input data that cannot be used. The message names the file and the entry."""


def to_uint8_rgb(img: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert a decoded image to H x W x 3 uint8 in RGB channel order.

    Args:
        img: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array in OpenCV's BGR(A) order,
            uint8, uint16 or float.
    Grayscale is replicated to three channels; alpha is dropped. Images with more than
    8 bits (16-bit thermal frames) are stretched linearly from their own min to max:
    raw sensor values occupy a narrow band of the 16-bit range, so a fixed shift would
    give an almost constant image. A constant image maps to zeros.
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise DataFormatError(f"{source}: unsupported image shape {img.shape}")
    if img.dtype != np.uint8:
        x = img.astype(np.float64)
        lo, hi = float(np.min(x)), float(np.max(x))
        x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
        img = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    return np.ascontiguousarray(img[:, :, 2::-1])  # BGR(A) -> RGB, alpha dropped


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """Read an image as H x W x 3 uint8.

    Args:
        path: image file.
        format: "BGR" (Detectron2's default model input) or "RGB".
    Raises:
        DataFormatError: the file is missing or cannot be decoded.
    """
    if format not in ("BGR", "RGB"):
        raise ValueError(f"read_image: format must be 'BGR' or 'RGB', got {format!r}")
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataFormatError(f"{path}: cannot decode image (corrupt or unsupported format)")
    rgb = to_uint8_rgb(img, source=path)
    return rgb if format == "RGB" else np.ascontiguousarray(rgb[:, :, ::-1])


VERIFY_LEVELS = ("none", "header", "full")
_TAIL = 4096  # bytes searched for the end marker of a JPEG / PNG


def _end_marker_missing(path: str, head: bytes) -> str:
    """The reason a JPEG or PNG file is truncated ("" when its end marker is there).

    A JPEG ends with the EOI marker FF D9 and a PNG with its IEND chunk; both may be
    followed by a little padding, so the last few KB are searched."""
    if head.startswith(b"\xff\xd8"):
        marker, what = b"\xff\xd9", "JPEG end-of-image marker"
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        marker, what = b"IEND", "PNG IEND chunk"
    else:
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - _TAIL))
        tail = f.read()
    return "" if marker in tail else f"truncated (no {what} at the end)"


def verify_image(path: str, level: str = "header") -> Optional[Tuple[int, int]]:
    """Check that an image file can be used; return its (width, height) (None when not
    read: ``level="none"``, or a header-checked image too large for PIL's safety limit).

    Args:
        path: image file.
        level: ``"header"`` reads the size from the header and, for JPEG and PNG, checks
            that the file ends with the format's end marker (a few KB read, no pixels
            decoded: catches empty, foreign and truncated files); ``"full"`` also decodes
            the pixels as :func:`read_image` does; ``"none"`` only requires the file.
    Raises:
        DataFormatError: naming the file and what is wrong with it.
    """
    if level not in VERIFY_LEVELS:
        raise ValueError(f"verify_image: level must be one of {VERIFY_LEVELS}, got {level!r}")
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: image file not found")
    if level == "none":
        return None
    from PIL import Image, UnidentifiedImageError

    if os.path.getsize(path) == 0:
        raise DataFormatError(f"{path}: cannot read image: the file is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        with Image.open(path) as im:
            size = tuple(int(v) for v in im.size)
    except Image.DecompressionBombError:  # a very large image: its header is readable
        size = None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot read image header ({e})") from None
    if size is not None and min(size) <= 0:
        raise DataFormatError(f"{path}: cannot read image: the header gives size {size[0]}x{size[1]}")
    reason = _end_marker_missing(path, head)
    if reason:
        raise DataFormatError(f"{path}: cannot use image: {reason}")
    if level == "full":
        img = read_image(path)
        if size is None:
            size = (img.shape[1], img.shape[0])
        elif (img.shape[1], img.shape[0]) != size:
            raise DataFormatError(f"{path}: decoded size {img.shape[1]}x{img.shape[0]} differs "
                                  f"from the header's {size[0]}x{size[1]}")
    return size


def relative_names(paths: List[str]) -> List[str]:
    """Each path relative to the deepest folder that holds all of them, extension kept.

    Outputs named after these (``<name>.png``, ``<name>_<n>.png``, in the same sub-folders)
    are distinct for distinct inputs (``a/x.jpg`` and ``b/x.jpg``, ``y.jpg`` and ``y.png``)
    and do not depend on the order of the inputs.
    """
    full = [os.path.normpath(os.path.abspath(p)) for p in paths]
    if not full:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in full])
    return [os.path.relpath(p, root) for p in full]


_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
STALE_AGE_S = 24 * 3600  # temporaries of other hosts / unknown owners are stale after this


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists (another user's process)
        return True
    return True


def remove_stale_temporaries(dest: str) -> List[str]:
    """Remove temporaries of ``dest`` (see :func:`atomic_path`) that no running process owns.

    A temporary written on this host whose process no longer exists is stale at once;
    one from another host (shared file systems), or without an owner in its name
    (written by earlier sod2 versions), when it is older than :data:`STALE_AGE_S`.
    Returns the removed paths.
    """
    dest = os.path.abspath(dest)
    parent, base = os.path.dirname(dest), os.path.basename(dest)
    pattern = re.compile(r"\." + re.escape(base) + r"\.(?:tmp|old)-"
                         r"(?:(?P<host>[A-Za-z0-9_.]+)-(?P<pid>\d+)-)?[A-Za-z0-9_]+$")
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    removed = []
    now = time.time()
    for name in names:
        m = pattern.match(name)
        if not m:
            continue
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if m.group("pid") is not None and m.group("host") == _HOST:
            pid = int(m.group("pid"))
            stale = pid != os.getpid() and not _pid_alive(pid)
        else:
            stale = now - st.st_mtime > STALE_AGE_S
        if not stale:
            continue
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError as e:
            logger.warning("%s: cannot remove stale temporary (%s)", path, e.strerror)
            continue
        logger.warning("removed %s, left behind by an interrupted run", path)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(dest: str, is_dir: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``dest``; rename it to ``dest`` when the block
    succeeds, delete it when the block raises (an existing ``dest`` is then untouched).

    Args:
        dest: final file or directory path.
        is_dir: create the temporary path as a directory.
    """
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    remove_stale_temporaries(dest)
    owner = f"{_HOST}-{os.getpid()}-"
    prefix = "." + os.path.basename(dest) + ".tmp-" + owner
    # mkdtemp/mkstemp create 0700/0600: give the final output the usual permissions
    umask = os.umask(0)
    os.umask(umask)
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.chmod(tmp, 0o777 & ~umask)
    else:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        if is_dir and os.path.isdir(dest):
            # rename cannot replace a non-empty directory: move the old one aside first
            old = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".old-" + owner, dir=parent)
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(text: str, dest: str) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def atomic_write_json(obj: Any, dest: str, indent=None) -> None:
    """Serialise ``obj`` as JSON to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)
