"""
File input/output shared by loaders, converters and tools.

* :func:`read_image` loads any image the supported datasets contain (8-bit colour,
  grayscale thermal frames, 16-bit sensor images) as an H x W x 3 uint8 array, with
  an error that names the file when it is missing or cannot be decoded.
* :func:`atomic_path` / :func:`atomic_write_json` / :func:`atomic_write_text` write to
  a temporary sibling and rename it into place on success, so an interrupted
  conversion never leaves a partial output behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import cv2
import numpy as np

__all__ = ["DataFormatError", "read_image", "to_uint8_rgb", "atomic_path", "atomic_write_json",
           "atomic_write_text"]


class DataFormatError(ValueError):
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
    prefix = "." + os.path.basename(dest) + ".tmp-"
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
            old = tempfile.mkdtemp(prefix="." + os.path.basename(dest) + ".old-", dir=parent)
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
