"""Write ``tests/fixtures/config-snapshots.json.gz``: every config under ``configs/`` (not
``common/``) loaded, resolved and stored as plain data by stem (``config_snapshots.py``).

Write it from committed code only (as ``make_golden.py``: a worktree of HEAD, with
``PYTHONPATH`` pointing at it); the configs are those of the ``sod2`` that is imported::

    (cd /tmp/head && PYTHONPATH=/tmp/head python3 <checkout>/tests/golden/snapshot_configs.py \\
        --output <checkout>/tests/fixtures/config-snapshots.json.gz)

``--add-new`` keeps every recorded snapshot as it is and records only the configs the file
does not know yet (by recorded stem, ``config_snapshots.recorded_stem``): new configs join the
guard without re-recording (and so silently accepting) the values of the others.
"""
import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import config_snapshots as S  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--add-new", action="store_true",
                    help="keep the snapshots in --output and add only configs it does not hold")
    args = ap.parse_args(argv)
    import sod2
    from sod2.config import configs_root

    root = configs_root()
    print(f"sod2 from {sod2.__file__}; configs from {root}")
    configs = dict(S.load_snapshots(args.output)) if args.add_new else {}
    known = set(configs)
    for rel in S.config_files(root):
        stem = Path(rel).stem
        if args.add_new:
            if S.recorded_stem(stem) in known:
                continue
            print(f"new: {rel}")
        if stem in configs:
            print(f"error: two configs named {stem}: {configs[stem]['path']} and {rel}", file=sys.stderr)
            return 2
        configs[stem] = {"path": rel, "config": S.snapshot(root / rel)}
        if args.add_new:  # recorded in today's layout: the deliberate moves of older records do not apply
            configs[stem]["added"] = True
    text = json.dumps({"format": "sod2 config snapshots 1", "configs": configs}, sort_keys=True,
                      separators=(",", ":"))
    if str(root.parent) in text:
        print(f"error: a resolved value names the checkout ({root.parent}); snapshots must not", file=sys.stderr)
        return 2
    tmp = args.output.with_name(args.output.name + ".tmp")
    # no name, mtime 0 in the gzip header: the same configs give the same bytes
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(text.encode("utf-8"))
    tmp.replace(args.output)
    print(f"{len(configs)} configs -> {args.output} ({args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
