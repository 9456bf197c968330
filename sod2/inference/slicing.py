"""Slice geometry of sliced inference, on sod2's patch geometry (:func:`sod2.data.split.patch_origins`).

Along each axis the slice origins are 0, stride, 2*stride, ...; the last slice is snapped
to the image edge (origin = size - slice); an image shorter than a slice gets one slice
covering it. The stride is given, or derived from an overlap ratio as SAHI derives it:
``stride = slice - int(overlap * slice)``. Windows are listed row by row (top to bottom,
left to right in each row) and are, for the same settings, exactly SAHI's
``get_slice_bboxes``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..data.split import patch_origins

__all__ = ["slice_pair", "slice_strides", "slice_windows", "draw_slice_windows"]

SizeLike = Union[int, Sequence[int]]


def slice_pair(value: SizeLike, what: str) -> Tuple[int, int]:
    """(height, width) of an int or an (h, w) pair; one ValueError line otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    else:
        try:
            if isinstance(value, str):
                raise TypeError
            pair = tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be an integer or a (height, width) pair, got {value!r}") from None
        if len(pair) != 2 or any(float(v) != int(v) for v in value):
            raise ValueError(f"{what} must be an integer or a (height, width) pair, got {value!r}")
    if min(pair) <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return pair


def slice_strides(slice_size: SizeLike, overlap: Union[float, Sequence[float], None] = 0.2,
                  stride: Optional[SizeLike] = None) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """((slice h, slice w), (stride y, stride x)) from a slice size and an overlap ratio or a stride.

    Args:
        slice_size: slice side, or (height, width), in pixels.
        overlap: fraction of a slice shared with the next one, in [0, 1), or (y, x) ratios;
            the overlap in pixels is ``int(overlap * slice)`` (SAHI's rounding).
        stride: step between slices in pixels (or (y, x)), 1..slice; replaces ``overlap``.
    """
    sh, sw = slice_pair(slice_size, "slice size")
    if stride is not None:
        ty, tx = slice_pair(stride, "slice stride")
    else:
        if overlap is None:
            raise ValueError("give an overlap ratio or a stride")
        oy, ox = (overlap, overlap) if np.isscalar(overlap) else tuple(overlap)
        for o in (oy, ox):
            if not 0.0 <= float(o) < 1.0:
                raise ValueError(f"slice overlap ratio must be in [0, 1), got {overlap!r}")
        ty, tx = sh - int(float(oy) * sh), sw - int(float(ox) * sw)
    if ty > sh or tx > sw:
        raise ValueError(f"slice stride {(ty, tx)} is larger than the slice {(sh, sw)}: bands between "
                         "slices would be in no slice")
    return (sh, sw), (ty, tx)


def slice_windows(height: int, width: int, slice_size: SizeLike, overlap=0.2,
                  stride: Optional[SizeLike] = None) -> np.ndarray:
    """The slices of a ``height`` x ``width`` image.

    Returns:
        (S, 4) int64 windows ``x0, y0, x1, y1`` (x1, y1 exclusive), clipped to the image, row
        by row. A slice is smaller than ``slice_size`` only along an axis shorter than it.
    """
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"cannot slice an empty image ({width}x{height})")
    (sh, sw), (ty, tx) = slice_strides(slice_size, overlap, stride)
    ys = patch_origins(int(height), sh, ty)
    xs = patch_origins(int(width), sw, tx)
    return np.array([[x, y, min(x + sw, width), min(y + sh, height)] for y in ys for x in xs],
                    np.int64).reshape(-1, 4)


def draw_slice_windows(image: np.ndarray, windows: np.ndarray, scale: float = 1.0,
                       thickness: int = 2, copy: bool = True, ran: Optional[np.ndarray] = None) -> np.ndarray:
    """Draw slice outlines on an RGB image, alternating two colours per row and column so
    that overlapping slices stay apart, with each slice's index at its corner.

    Args:
        image: (H, W, 3) uint8, the picture the windows are drawn on (``scale`` times the
            image the windows were computed for).
        windows: (S, 4) ``x0, y0, x1, y1`` in the unscaled image.
        copy: draw on a copy (True) or on ``image`` itself when it is C-contiguous (False:
            no second picture in memory, for large images).
        ran: (S,) bool, guided slicing's selection: the slices that ran are drawn as above,
            the others in grey, one pixel wide, without an index. None: all ran.
    Returns:
        (H, W, 3) uint8.
    """
    import cv2

    out = image.copy() if copy or not image.flags.c_contiguous else image
    xs = {int(x): i for i, x in enumerate(sorted({int(w[0]) for w in windows}))}
    ys = {int(y): i for i, y in enumerate(sorted({int(w[1]) for w in windows}))}
    colours = [(255, 64, 0), (0, 160, 255), (255, 200, 0), (160, 0, 255)]
    wins = np.asarray(windows).tolist()
    ran = np.ones(len(wins), bool) if ran is None else np.asarray(ran, bool).reshape(-1)
    if len(ran) != len(wins):
        raise ValueError(f"ran has {len(ran)} entries for {len(wins)} windows")
    order = [n for n in range(len(wins)) if not ran[n]] + [n for n in range(len(wins)) if ran[n]]
    for n in order:  # skipped slices first, so that the outlines of those that ran stay on top
        x0, y0, x1, y1 = wins[n]
        p0 = (int(round(x0 * scale)), int(round(y0 * scale)))
        p1 = (int(round(x1 * scale)) - 1, int(round(y1 * scale)) - 1)
        if not ran[n]:
            cv2.rectangle(out, p0, p1, (128, 128, 128), 1)
            continue
        c = colours[(xs[x0] % 2) + 2 * (ys[y0] % 2)]
        cv2.rectangle(out, p0, p1, c, thickness)
        cv2.putText(out, str(n), (p0[0] + 4, p0[1] + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 1, cv2.LINE_AA)
    return out
