"""Write the golden fixtures of tests/test_golden.py from the code that ``sod2`` imports:
``tests/fixtures/golden/<stem>.json`` (losses of one seeded training forward and the top-50
detections of one eval forward, fixed weights, for each config of ``GOLDEN_CONFIGS``) and
``tests/fixtures/legacy-keys/<stem>.json`` (the state-dict keys, shapes and kinds of the
method models of ``LEGACY_KEY_CONFIGS``).

Record from committed code only, e.g. from a worktree of HEAD::

    git worktree add /tmp/head HEAD
    cp sod2/evaluation/_box_matching*.so /tmp/head/sod2/evaluation/   # the built kernel
    (cd /tmp/head && PYTHONPATH=/tmp/head python3 <checkout>/tests/golden/make_golden.py \\
        --fixtures <checkout>/tests/fixtures)
    git worktree remove --force /tmp/head

The script prints where ``sod2`` came from; ``--only STEM`` (repeatable) rewrites some files.
Rewriting a fixture is a deliberate act: say in the commit why the outputs changed.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # golden_runs, not the checkout's sod2

import torch  # noqa: E402

import golden_runs as G  # noqa: E402
from config_snapshots import recorded_stem  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", required=True, type=Path, help="the tests/fixtures folder to write into")
    ap.add_argument("--only", action="append", default=[], help="a stem of GOLDEN_CONFIGS (repeatable)")
    args = ap.parse_args(argv)
    import detectron2

    import sod2

    print(f"sod2 from {sod2.__file__}; torch {torch.__version__}; detectron2 {detectron2.__version__}")
    stems = args.only or list(G.GOLDEN_CONFIGS)
    unknown = sorted(set(stems) - set(G.GOLDEN_CONFIGS))
    if unknown:
        print(f"error: unknown stems {unknown}; known: {sorted(G.GOLDEN_CONFIGS)}", file=sys.stderr)
        return 2
    (args.fixtures / "golden").mkdir(parents=True, exist_ok=True)
    (args.fixtures / "legacy-keys").mkdir(parents=True, exist_ok=True)
    for stem in stems:
        t0 = time.perf_counter()
        path = G.GOLDEN_CONFIGS[stem]
        model = G.build_model(path)
        rec = G.round_record(G.run_golden(model))
        rec = {"config": path, "torch": torch.__version__, "detectron2": detectron2.__version__,
               "batch": "golden_runs.golden_batch()", "top_k": G.TOP_K, **rec}
        (args.fixtures / "golden" / f"{recorded_stem(stem)}.json").write_text(G.dump_json(rec))
        if stem in G.LEGACY_KEY_CONFIGS:
            layout = {"config": path, "torch": torch.__version__, "format": "key: [shape, dtype, parameter|buffer]",
                      "keys": G.state_dict_layout(G.build_model(path))}  # a fresh model: the layout only
            (args.fixtures / "legacy-keys" / f"{recorded_stem(stem)}.json").write_text(G.dump_json(layout))
        n = [len(d["scores"]) for d in rec["detections"]]
        print(f"{stem}: {len(rec['losses'])} losses, detections per image {n}, {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
