"""tools/evaluate_json.py: bad arguments and malformed ground truth are one-line errors
naming the argument, or the file and entry."""
import json
from pathlib import Path

import pytest

from ..modules import tool_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    return tool_module("evaluate_json")


def _files(tmp_path, **ann_fields):
    ann = {"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 10, 8, 8], "area": 64, "iscrowd": 0}
    ann.update(ann_fields)
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
          "annotations": [{"id": 6, "image_id": 1, "category_id": 1, "bbox": [50, 50, 9, 9], "area": 81,
                           "iscrowd": 0}, ann],
          "categories": [{"id": 1, "name": "car"}]}
    dt = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 8, 8], "score": 0.9}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return ["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), "--quiet"]


def _error(tool, argv, capsys):
    with pytest.raises(SystemExit) as e:
        tool.main(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err.strip() or str(e.value.code)
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_valid_run(tool, tmp_path):
    metrics = tool.main(_files(tmp_path) + ["--ranges", "tiny=0,100", "big=100,inf", "--max-dets", "1,10"])
    assert metrics["AP"] is not None


@pytest.mark.parametrize("args, message", [
    (["--ranges", "s=0,100", "s=0,200"], "--ranges: 's' is given twice"),
    (["--ranges", "all=0,100"], "'all' is implied"),
    (["--ranges", "s=100,50"], "need 0 <= lo <= hi"),
    (["--ranges", "s=nan,50"], "need 0 <= lo <= hi"),
    (["--max-dets", "1.5"], "--max-dets: 1.5 is not a positive integer"),
    (["--max-dets", "10,inf"], "--max-dets: inf is not a positive integer"),
    (["--max-dets", "nan"], "--max-dets: nan is not a positive integer"),
    (["--max-dets", "0"], "--max-dets: 0 is not a positive integer"),
    (["--max-dets", "ten"], "--max-dets: expected numbers"),
    (["--max-dets", "10,10"], "--max-dets: a value is given twice"),
    (["--iou-thrs", "0.5", "nan"], "--iou-thrs: nan is not in (0, 1]"),
    (["--iou-thrs", "50"], "--iou-thrs: 50 is not in (0, 1]"),
])
def test_bad_arguments(tool, tmp_path, capsys, args, message):
    assert message in _error(tool, _files(tmp_path) + args, capsys)


def test_output_folder_is_refused(tool, tmp_path, capsys):
    assert "--output" in _error(tool, _files(tmp_path) + ["--output", str(tmp_path)], capsys)


@pytest.mark.parametrize("field, value, message", [
    ("ignore", "false", "'ignore' must be true/false or 0/1, got 'false'"),
    ("iscrowd", 2, "'iscrowd' must be true/false or 0/1, got 2"),
    ("uncertain", [1], "'uncertain' must be true/false or 0/1"),
    ("area", "64", "'area' must be a finite number >= 0, got '64'"),
    ("image_id", [1], "'image_id' must be an integer or a string, got [1]"),
    ("category_id", None, "'category_id' must be an integer or a string, got None"),
])
def test_ground_truth_field_of_wrong_type(tool, tmp_path, capsys, field, value, message):
    err = _error(tool, _files(tmp_path, **{field: value}), capsys)
    assert err.startswith(f"error: {tmp_path / 'gt.json'}: annotation #1 (id 7): ")
    assert message in err


def test_image_entry_of_wrong_type(tool, tmp_path, capsys):
    argv = _files(tmp_path)
    gt = json.loads((tmp_path / "gt.json").read_text())
    gt["images"][0]["width"] = "100"
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    err = _error(tool, argv, capsys)
    assert err == f"error: {tmp_path / 'gt.json'}: image #0 (id 1): 'width' must be a finite number >= 0, got '100'"


def test_docstring_names_no_outside_path():
    text = (REPO / "tools" / "evaluate_json.py").read_text()
    assert "../" not in text


def test_output_is_atomic_and_removes_a_killed_runs_temporary(tool, tmp_path):
    from sod2.data.io import _HOST

    out = tmp_path / "res" / "metrics.json"
    out.parent.mkdir()
    # a temporary of a process that no longer exists (pid far above pid_max)
    stale = out.parent / f".metrics.json.tmp-{_HOST}-999999999-abc"
    stale.write_text("partial")
    tool.main(_files(tmp_path) + ["--output", str(out)])
    assert json.loads(out.read_text())["protocol"]
    assert not stale.exists()
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]
