#!/usr/bin/env python3
"""
The benchmark tools under one name, so that ``tools/benchmark.py <tool> ...`` keeps working:

    python tools/benchmark.py models ...       # = tools/benchmark_models.py ...
    python tools/benchmark.py consistency ...  # = tools/benchmark_consistency.py ...
    python tools/benchmark.py evaluator ...    # = tools/benchmark_evaluator.py ...
    python tools/benchmark.py sliced ...       # = tools/benchmark_sliced.py ...

Each tool is its own file with its own options (``--help``); this forwards the remaining
arguments to that tool's ``main`` and exits with its status.
"""
import importlib
import os
import sys

TOOLS = {"models": "benchmark_models", "consistency": "benchmark_consistency",
         "evaluator": "benchmark_evaluator", "sliced": "benchmark_sliced"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if not argv or argv[0] not in TOOLS:
        given = f"unknown tool {argv[0]!r}" if argv else "no tool given"
        print(f"error: {given}; tools/benchmark.py <tool> ..., tool one of: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    tool = importlib.import_module(TOOLS[argv[0]])
    sys.argv[0] = tool.__file__
    return tool.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
