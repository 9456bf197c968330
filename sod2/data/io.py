"""
File input/output shared by loaders, converters and tools.

* :func:`read_image` loads any image the supported datasets contain (8-bit colour,
  grayscale thermal frames, 16-bit sensor images) as an H x W x 3 uint8 array, with
  an error that names the file when it is missing or cannot be decoded. The EXIF
  orientation is applied as Detectron2's ``read_image`` applies it (camera and drone
  JPEGs are stored sideways with an orientation tag; boxes are annotated on the upright
  image), so training, evaluation, the demo, slicing and the converters' size checks
  all see the upright image.
* :func:`verify_image` checks that an image file is usable without loading it fully
  (header and end marker), or by decoding it (``level="full"``); the size it returns
  is the upright (EXIF-oriented) size, as :func:`image_size` returns it.
* :func:`atomic_path` / :func:`atomic_write_json` / :func:`atomic_write_text` write to
  a temporary sibling and rename it into place on success, so an interrupted
  conversion never leaves a partial output behind. The temporary name carries the host
  and process id (``.<name>.tmp-<host>-<pid>-<random>``); temporaries that a killed
  process left behind are removed by the next write of the same output
  (:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from typing import IO, Any, Iterator, List, Optional, Tuple

import cv2
import numpy as np

# absolute: tools/evaluate_json.py loads this file on its own, outside the sod2.data package
from sod2.errors import UserError

logger = logging.getLogger(__name__)

__all__ = ["DataFormatError", "read_image", "to_uint8_rgb", "verify_image", "VERIFY_LEVELS", "image_size",
           "exif_orientation", "apply_orientation",
           "relative_names", "atomic_path", "atomic_write_json", "atomic_write_text", "remove_stale_temporaries"]


class DataFormatError(UserError):
    """Input data that cannot be used. The message names the file and the entry."""


def to_uint8_rgb(img: np.ndarray, source: str = "<array>") -> np.ndarray:
    """Convert a decoded image to H x W x 3 uint8 in RGB channel order.

    Args:
        img: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array in OpenCV's BGR(A) order,
            uint8, uint16 or float.
        source: names the image in error messages (its file).
    Returns:
        (H, W, 3) uint8 RGB.
    Grayscale is replicated to three channels; alpha is dropped. Images with more than
    8 bits (16-bit thermal frames) are stretched linearly from their own min to max:
    raw sensor values occupy a narrow band of the 16-bit range, so a fixed shift would
    give an almost constant image. A constant image maps to zeros.

    Raises:
        DataFormatError: an unsupported shape, or a float image with NaN or infinite
            pixels (naming ``source``, the counts and the first such pixel): they have
            no 8-bit value, and stretching with them would turn the whole image into
            zeros (NaN) or one flat colour (inf), so they are refused rather than
            replaced by a guess.
    """
    return _to_uint8(img, source, "RGB")


def _to_uint8(img: np.ndarray, source: str, format: str) -> np.ndarray:
    """:func:`to_uint8_rgb` with the output channel order ``format`` ("RGB" or "BGR"),
    in one copy of the pixels for 8-bit images."""
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise DataFormatError(f"{source}: unsupported image shape {img.shape}")
    if img.dtype != np.uint8:
        if img.dtype.kind == "f":
            _refuse_non_finite(img, source)
        x = img.astype(np.float64)
        lo, hi = float(np.min(x)), float(np.max(x))
        x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
        img = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))
    # BGR(A) -> the channel order asked, alpha dropped
    return np.ascontiguousarray(img[:, :, 2::-1] if format == "RGB" else img[:, :, :3])


def _refuse_non_finite(img: np.ndarray, source: str) -> None:
    """DataFormatError naming ``source`` when a float image has NaN or +-inf values."""
    finite = np.isfinite(img)
    if finite.all():
        return
    n_nan = int(np.isnan(img).sum())
    n_inf = int(finite.size - finite.sum()) - n_nan
    y, x = (int(v) for v in np.argwhere(~finite)[0][:2])
    parts = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
    raise DataFormatError(f"{source}: image has {' and '.join(parts)} value(s) (first at row {y}, column {x}); "
                          f"non-finite pixels have no 8-bit value: replace them in the file")


EXIF_ORIENTATION = 0x0112  # the EXIF / TIFF Orientation tag

# EXIF orientation -> (reverse the rows, reverse the columns, swap the axes), applied in this
# order to the stored pixels, gives the upright image: the transposes Detectron2's
# read_image applies (Pillow's FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE,
# ROTATE_270, TRANSVERSE, ROTATE_90 for 2..8). 1 and unknown values: as stored.
_ORIENTATIONS = {2: (False, True, False), 3: (True, True, False), 4: (True, False, False),
                 5: (False, False, True), 6: (True, False, True), 7: (True, True, True),
                 8: (False, True, True)}


def apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """The upright view of stored pixels with an EXIF ``orientation`` (1-8).

    Args:
        img: (H, W) or (H, W, C) array as stored in the file.
    Returns:
        a view (not a copy): (H, W[, C]) for orientations 1-4 and unknown values,
        (W, H[, C]) for 5-8 (a quarter turn or a transpose).
    """
    rule = _ORIENTATIONS.get(orientation)
    if rule is None:
        return img
    rows, cols, swap = rule
    if rows:
        img = img[::-1]
    if cols:
        img = img[:, ::-1]
    return img.swapaxes(0, 1) if swap else img


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")


def _png_metadata_after_pixels(fp: IO[bytes]) -> bool:
    """True when a PNG has an EXIF or text chunk (which may carry an orientation) after its
    first IDAT chunk: Pillow then has to decode the pixels to reach it. Reads chunk
    headers only."""
    fp.seek(len(_PNG_SIGNATURE))
    seen_pixels = False
    while True:
        head = fp.read(8)
        if len(head) < 8:
            return False
        length, kind = int.from_bytes(head[:4], "big"), head[4:]
        if kind == b"IEND":
            return False
        if kind == b"IDAT":
            seen_pixels = True
        elif seen_pixels and kind in _PNG_METADATA:
            return True
        fp.seek(length + 4, os.SEEK_CUR)  # data and CRC


def _open_header(fp: IO[bytes]):
    """Pillow's image object for ``fp``, header only (no pixels decoded).

    ``PIL.Image.open`` without its decompression-bomb check: that check guards decoding,
    which sod2 leaves to OpenCV, and would warn about (above 89 Mpx) or refuse (above
    179 Mpx) the headers of the large aerial images that sliced inference is for. The
    formats are tried in Pillow's own order (``Image.ID``, its registered openers).

    Raises:
        PIL.UnidentifiedImageError: no format of Pillow's reads the header.
    """
    from PIL import Image, UnidentifiedImageError

    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        known = True if accept is None else accept(prefix)
        if not known or isinstance(known, str):  # a str: recognised, but not readable
            continue
        fp.seek(0)
        try:
            return factory(fp, "")
        except (SyntaxError, IndexError, TypeError, ValueError, OSError, struct.error):
            continue
    raise UnidentifiedImageError("not an image format that Pillow reads")


_warned_exif: set = set()


def _orientation(im, fp: IO[bytes], source: str) -> int:
    """The EXIF orientation (1-8) of an image that Pillow opened from ``fp``; 1 when it
    has none, or an unusable one (warned once per file)."""
    from PIL import Image

    try:
        if im.format == "PNG" and not _png_metadata_after_pixels(fp):
            # the metadata is in the chunks before the pixels, which Pillow has read; its
            # PngImageFile.getexif would decode the whole image to look further
            exif = Image.Image.getexif(im)
        else:
            exif = im.getexif()
        value = exif.get(EXIF_ORIENTATION, 1)
    except Exception as e:  # a damaged EXIF block: as Detectron2, use the pixels as stored
        if source not in _warned_exif:
            _warned_exif.add(source)
            logger.warning("%s: unreadable EXIF data (%s): orientation not applied", source, e)
        return 1
    return value if isinstance(value, int) and value in _ORIENTATIONS else 1


_PROBE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}, "AVIF": {"quality": 100}}
_format_facts_cache: dict = {}


def _format_facts(fmt: str) -> Tuple[bool, bool]:
    """(Pillow's header size is upright, OpenCV's unchanged-depth decoding is upright) for
    files of Pillow format ``fmt`` with an EXIF orientation.

    Both are False for JPEG, PNG and WebP; both are True for TIFF, whose readers apply the
    orientation themselves (Pillow >= 11 and OpenCV 5; Detectron2's ``read_image`` then
    turns TIFFs a second time). Found once per format and process from a 32 x 48 probe
    that Pillow writes with orientation 6; a format that Pillow cannot write with an
    orientation counts as (False, False)."""
    fmt = "JPEG" if fmt == "MPO" else fmt
    if fmt not in _format_facts_cache:
        from PIL import Image

        probe = np.zeros((32, 48, 3), np.uint8)
        probe[:16, :24] = 255  # stored top-left quadrant white: upright, the top-right one
        buf = io.BytesIO()
        facts = (False, False)
        try:
            if fmt == "TIFF":
                Image.fromarray(probe).save(buf, format=fmt, tiffinfo={EXIF_ORIENTATION: 6})
            else:
                exif = Image.Exif()
                exif[EXIF_ORIENTATION] = 6
                Image.fromarray(probe).save(buf, format=fmt, exif=exif, **_PROBE_OPTIONS.get(fmt, {}))
            with _open_header(buf) as im:
                size_upright = tuple(im.size) == (32, 48)
            out = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
            pixels_upright = bool(out is not None and out.shape[:2] == (48, 32)
                                  and out[:24, 16:].mean() > 128 > out[24:, :16].mean())
            facts = (size_upright, pixels_upright)
        except Exception:  # Pillow cannot write this format with an orientation: nothing to learn
            pass
        _format_facts_cache[fmt] = facts
    return _format_facts_cache[fmt]


def exif_orientation(path: str) -> int:
    """The EXIF orientation tag of an image file: 1 (as stored) to 8; 1 when the file has
    no EXIF orientation or Pillow cannot read its header. Reads the header only."""
    from PIL import UnidentifiedImageError

    try:
        with open(path, "rb") as f, _open_header(f) as im:
            return _orientation(im, f, path)
    except (UnidentifiedImageError, OSError, ValueError):
        return 1


def _header_size(path: str) -> Tuple[int, int]:
    """Upright (width, height) from the header of an existing file.

    Raises:
        DataFormatError: Pillow cannot read the header.
    """
    from PIL import UnidentifiedImageError

    try:
        with open(path, "rb") as f, _open_header(f) as im:
            w, h = (int(v) for v in im.size)
            quarter_turn = _orientation(im, f, path) >= 5 and not _format_facts(im.format)[0]
            return (h, w) if quarter_turn else (w, h)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(f"{path}: cannot read image header ({e})") from None


def image_size(path: str) -> Tuple[int, int]:
    """Upright (width, height) of an image file from its header (EXIF orientation
    applied, as :func:`read_image` applies it), without decoding the pixels.

    Raises:
        DataFormatError: the file is missing or its header cannot be read.
    """
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: image file not found")
    return _header_size(path)


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """Read an image as H x W x 3 uint8, upright.

    The pixels are decoded by OpenCV (8- and 16-bit, grayscale, float; see
    :func:`to_uint8_rgb`), then turned upright by the file's EXIF orientation
    (:func:`exif_orientation`, :func:`apply_orientation`) as Detectron2's ``read_image``
    does: an orientation-6 JPEG stored as 400 x 300 (W x H) is returned as (400, 300, 3)
    (H, W, C). OpenCV's decoding that keeps 16 bits leaves the orientation to sod2, except
    for TIFF, whose decoder applies it itself (:func:`_format_facts` finds out which).

    Args:
        path: image file.
        format: "BGR" (Detectron2's default model input) or "RGB".
    Returns:
        (H, W, 3) uint8 in ``format`` order, H x W the upright size.
    Raises:
        DataFormatError: the file is missing or cannot be decoded, or has non-finite pixels.
    """
    if format not in ("BGR", "RGB"):
        raise ValueError(f"read_image: format must be 'BGR' or 'RGB', got {format!r}")
    if not os.path.isfile(path):
        raise DataFormatError(f"{path}: image file not found")
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise DataFormatError(f"{path}: cannot decode image (corrupt or unsupported format)")
    from PIL import UnidentifiedImageError

    fp = io.BytesIO(data.data)
    try:
        with _open_header(fp) as im:
            orientation = _orientation(im, fp, path)
            if orientation != 1 and _format_facts(im.format)[1]:
                orientation = 1  # OpenCV's decoder has turned it already (TIFF)
    except (UnidentifiedImageError, OSError, ValueError):  # OpenCV reads it, Pillow does not
        orientation = 1
    return _to_uint8(apply_orientation(img, orientation), path, format)


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
    """Check that an image file can be used; return its upright (width, height), the
    EXIF orientation applied as :func:`read_image` applies it (None for ``level="none"``).

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
    if os.path.getsize(path) == 0:
        raise DataFormatError(f"{path}: cannot read image: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(16)
    size = _header_size(path)
    if min(size) <= 0:
        raise DataFormatError(f"{path}: cannot read image: the header gives size {size[0]}x{size[1]}")
    reason = _end_marker_missing(path, head)
    if reason:
        raise DataFormatError(f"{path}: cannot use image: {reason}")
    if level == "full":
        img = read_image(path)
        if (img.shape[1], img.shape[0]) != size:
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
