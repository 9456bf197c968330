"""The repository stands alone: no file refers to files outside it (a user's clone has only
the repository). .ci/run is the one exception: this project's CI links the HIT-UAV val split
from the workspace next to the checkout."""
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {".ci/run"}
# assembled from parts so that this file does not match itself
SH, WORK = "sh" + "ared", "wo" + "rk"
OUTSIDE = re.compile("|".join([
    re.escape(f"../{SH}"),
    r"(?<![\w.-])" + re.escape(f"/{WORK}/"),
    *(re.escape(f"{SH}/{d}") for d in ("specs", "fixtures", "data")),
]))


def _repository_files():
    """Tracked files and new files that git does not ignore."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted({f for f in out.decode().split("\0") if f})


def outside_references(files, root=REPO):
    """``file:line: text`` for every line of a text file that names a path outside the repository."""
    hits = []
    for rel in files:
        path = root / rel
        if rel in ALLOWED or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for no, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{rel}:{no}: {line.strip()[:160]}")
    return hits


def test_patterns():
    bad = [f"see ../{SH}/specs/cfinet.md", f"/{WORK}/{SH}/data", f"{SH}/fixtures/x", f"../{SH}"]
    good = ["datasets/README.md", "tests/fixtures/coco-ranges", "homework/x", "a shared folder"]
    assert all(OUTSIDE.search(s) for s in bad)
    assert not any(OUTSIDE.search(s) for s in good)


def test_outside_references_are_reported(tmp_path):
    (tmp_path / "doc.md").write_text(f"line one\nsee ../{SH}/specs/x.md\n")
    (tmp_path / "img.bin").write_bytes(f"\0../{SH}".encode())
    assert outside_references(["doc.md", "img.bin"], tmp_path) == [f"doc.md:2: see ../{SH}/specs/x.md"]


def test_no_file_refers_outside_the_repository():
    hits = outside_references(_repository_files())
    assert not hits, "references outside the repository:\n" + "\n".join(hits)
