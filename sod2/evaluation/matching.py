"""Loader for the compiled matching kernel (``sod2/csrc/box_matching.c``)."""
try:
    from sod2.evaluation._box_matching import match_groups  # noqa: F401
except ImportError as e:  # pragma: no cover - only without a build
    raise ImportError(
        "sod2's evaluation kernel (sod2/evaluation/_box_matching) is not built. Install sod2 "
        "with `pip install -e .` (or run `python setup.py build_ext --inplace`) in the sod2 "
        f"checkout; it needs a C compiler and the Python headers. ({e})"
    ) from e
