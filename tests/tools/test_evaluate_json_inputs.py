"""tools/evaluate_json.py run as a user runs it: ids of the wrong type, boxes of negative
size and unwritable outputs are refused with one line and exit status 2; NaN/inf detections
are dropped with one warning that counts them (as the training-time evaluator does); the
metrics file is strict JSON."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "evaluate_json.py"

# two objects of class 1 on image 1, one of class 2 on image 2
GT = {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
      "annotations": [
          {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
          {"id": 3, "image_id": 2, "category_id": 2, "bbox": [30, 30, 20, 20], "area": 400, "iscrowd": 0}],
      "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "van"}]}
# every object found exactly
DT = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
      {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},
      {"image_id": 2, "category_id": 2, "bbox": [30, 30, 20, 20], "score": 0.7}]


def _write(tmp_path, gt=GT, dt=DT):
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))  # Python writes NaN/Infinity literals
    return tmp_path / "gt.json", tmp_path / "dt.json"


def _run(gt, dt, *args):
    return subprocess.run([sys.executable, str(TOOL), "--gt", str(gt), "--dt", str(dt), "--quiet", *args],
                          capture_output=True, text=True, cwd=REPO)


def _refused(proc):
    """The one error line of a refused run (exit status 2, no traceback, no table)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def _strict_json(path):
    def refuse(literal):
        raise AssertionError(f"{path} holds the non-JSON literal {literal}")
    return json.loads(Path(path).read_text(), parse_constant=refuse)


def _with(entries, index, **fields):
    out = [dict(e) for e in entries]
    out[index].update(fields)
    return out


def test_valid_files_score_100(tmp_path):
    out = tmp_path / "m.json"
    proc = _run(*_write(tmp_path), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    metrics = _strict_json(out)["metrics"]
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AR@100"] == pytest.approx(100.0)
    assert metrics["AP_large"] is None  # no ground truth above 96^2: null, not NaN


@pytest.mark.parametrize("field", ["image_id", "category_id"])
def test_ground_truth_id_as_string_is_refused(tmp_path, field):
    """'1' for the image (category) 1 used to be dropped with a warning: AP 100 -> 50."""
    gt = dict(GT, annotations=_with(GT["annotations"], 1, **{field: "1"}))
    gt_path, dt_path = _write(tmp_path, gt=gt)
    kind = "image" if field == "image_id" else "category"
    assert _refused(_run(gt_path, dt_path)) == (
        f"error: {gt_path}: annotation #1 (id 2): {field} '1' is a str but the ground truth's "
        f"{kind} ids are integers")


def test_string_ids_everywhere_are_accepted(tmp_path):
    """String ids are fine when the lists use strings too."""
    gt = {"images": [dict(i, id=f"img{i['id']}") for i in GT["images"]],
          "annotations": [dict(a, image_id=f"img{a['image_id']}", category_id=str(a["category_id"]))
                          for a in GT["annotations"]],
          "categories": [dict(c, id=str(c["id"])) for c in GT["categories"]]}
    dt = [dict(d, image_id=f"img{d['image_id']}", category_id=str(d["category_id"])) for d in DT]
    out = tmp_path / "m.json"
    proc = _run(*_write(tmp_path, gt=gt, dt=dt), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert _strict_json(out)["metrics"]["AP"] == pytest.approx(100.0)


@pytest.mark.parametrize("field, value, message", [
    ("image_id", "1", "image_id '1' is a str but the ground truth's image ids are integers"),
    ("category_id", "2", "category_id '2' is a str but the ground truth's category ids are integers"),
    ("image_id", 9, "image_id 9 is not in the ground truth"),
    ("score", "0.7", "'score' must be a number, got '0.7'"),
    ("bbox", [30, 30, "20", 20], "'bbox' must hold numbers, got [30, 30, '20', 20]"),
    ("bbox", [30, 30, None, 20], "'bbox' must hold numbers, got [30, 30, None, 20]"),
])
def test_bad_detection_is_refused(tmp_path, field, value, message):
    gt_path, dt_path = _write(tmp_path, dt=_with(DT, 2, **{field: value}))
    assert _refused(_run(gt_path, dt_path)) == f"error: {dt_path}: detection #2: {message}"


@pytest.mark.parametrize("bbox", [[50, 50, -20, 20], [50, 50, 20, -0.5]])
def test_ground_truth_of_negative_size_is_refused(tmp_path, bbox):
    gt_path, dt_path = _write(tmp_path, gt=dict(GT, annotations=_with(GT["annotations"], 1, bbox=bbox)))
    assert _refused(_run(gt_path, dt_path)) == (
        f"error: {gt_path}: annotation #1 (id 2): 'bbox' has a negative width or height: {bbox} "
        "(COCO boxes are [x, y, w, h] with w, h >= 0)")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_ground_truth_not_finite_is_refused(tmp_path, value):
    gt_path, dt_path = _write(tmp_path, gt=dict(GT, annotations=_with(GT["annotations"], 0,
                                                                      bbox=[10, value, 20, 20])))
    line = _refused(_run(gt_path, dt_path))
    assert line.startswith(f"error: {gt_path}: annotation #0 (id 1): 'bbox' is not finite")


def test_zero_size_ground_truth_is_kept_as_pycocotools_keeps_it(tmp_path):
    """A zero-width object is never matched (IoU 0): recall 2 of 3 objects."""
    gt = dict(GT, annotations=_with(GT["annotations"], 1, bbox=[50, 50, 0, 20], area=0))
    out = tmp_path / "m.json"
    proc = _run(*_write(tmp_path, gt=gt), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    # car: 1 of 2 found (precision 1 up to recall 0.5: 51 of 101 recall points); van: 1 of 1
    assert _strict_json(out)["metrics"]["AP-car"] == pytest.approx(100 * 51 / 101)


def test_nonfinite_detections_are_dropped_with_one_counted_warning(tmp_path):
    """NaN/Infinity literals (what a diverged model's results written by Python hold): the
    NaN box ranked first would have matched the second car, the +inf-scored false positive
    would rank first. Dropped, the finite detections alone score: car 1 of 2 found, van found."""
    nan, inf = float("nan"), float("inf")
    dt = [DT[0], DT[2],
          {"image_id": 1, "category_id": 1, "bbox": [nan, nan, nan, nan], "score": 0.95},
          {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": nan},
          {"image_id": 1, "category_id": 1, "bbox": [80, 0, 10, 10], "score": inf},
          {"image_id": 2, "category_id": 2, "bbox": [30, 30, inf, 20], "score": 0.99},
          {"image_id": 2, "category_id": 2, "bbox": [30, -inf, 20, 20], "score": -inf}]
    gt_path, dt_path = _write(tmp_path, dt=dt)
    assert "NaN" in dt_path.read_text() and "Infinity" in dt_path.read_text()
    out = tmp_path / "m.json"
    proc = _run(gt_path, dt_path, "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"warning: {dt_path}: 5 of 7 detections have a NaN or infinite box or score and are not "
        "evaluated (they would match any ground truth); a diverged model?"]
    metrics = _strict_json(out)["metrics"]
    assert metrics["AP-car"] == pytest.approx(100 * 51 / 101)
    assert metrics["AP-van"] == pytest.approx(100.0)
    assert metrics["AR@100"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert "evaluated 2 detections" in proc.stdout


def test_output_that_is_a_folder_is_refused_before_evaluating(tmp_path):
    gt_path, dt_path = _write(tmp_path)
    folder = tmp_path / "out"
    folder.mkdir()
    assert _refused(_run(gt_path, dt_path, "--output", str(folder))) == (
        f"error: --output {folder} is a folder; give the path of the .json file to write")
    assert list(folder.iterdir()) == []


def _read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:  # root writes anyway
        (folder / "probe").write_text("")
    except OSError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(0o755)
    return None


@pytest.mark.parametrize("where", ["read-only folder", "procfs", "below a file"])
def test_unwritable_output_is_refused_before_evaluating(tmp_path, where):
    gt_path, dt_path = _write(tmp_path)
    if where == "read-only folder":
        folder = _read_only_folder(tmp_path)
        if folder is None:
            pytest.skip("running as root: a chmod 555 folder is writable (the procfs case covers it)")
        output = folder / "sub" / "m.json"
        message = f"error: --output {output}: cannot create a file in {folder} (Permission denied)"
    elif where == "procfs":
        if not os.path.isdir("/proc/sys"):
            pytest.skip("no /proc/sys")
        output = Path("/proc/sys/m.json")  # a folder no one can create files in, root included
        message = f"error: --output {output}: cannot create a file in /proc/sys ("
    else:
        output = gt_path / "m.json"
        message = f"error: --output {output}: {gt_path} is not a folder"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    try:
        line = _refused(_run(gt_path, dt_path, "--output", str(output)))
    finally:
        if where == "read-only folder":
            (tmp_path / "ro").chmod(0o755)
    assert line.startswith(message), line
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
