"""Class-agnostic proposal recall per bucket, by hand."""
import numpy as np
import pytest

from sod2.data.datasets.common import IGNORE_REGION, make_annotation
from sod2.evaluation.proposal_recall import format_recall_table, proposal_recall


def test_recall_by_hand():
    # image 1: a 10x10 object (eS: area 100) of class 0 and a 16x16 one (rS) of class 1;
    # image 2: a 25x25 one (gS) and an ignore region
    dicts = [{"image_id": 1, "height": 100, "width": 100, "annotations": [
                 make_annotation([0, 0, 10, 10], 0), make_annotation([50, 50, 16, 16], 1)]},
             {"image_id": 2, "height": 100, "width": 100, "annotations": [
                 make_annotation([10, 10, 25, 25], 0), make_annotation([60, 60, 30, 30], IGNORE_REGION, ignore=True)]}]
    props = [{"image_id": 1, "boxes": np.array([[50, 50, 66, 66], [0, 0, 10, 10], [80, 80, 90, 90.0]]),
              "scores": np.array([3.0, 2.0, 1.0])},
             {"image_id": 2, "boxes": np.array([[60, 60, 90, 90], [12, 10, 37, 35.0]]), "scores": np.array([5.0, 4.0])}]
    r = proposal_recall(dicts, props, "sodad", max_proposals=(1, 2, 3))
    # top-1 per image finds the rS object in image 1 and nothing in image 2 (the region's box
    # matches no ground truth: regions are dropped under the SODA-D protocol)
    assert r["AR@1"] == pytest.approx(100 / 3)
    assert r["AR_rS@1"] == pytest.approx(100.0) and r["AR_eS@1"] == pytest.approx(0.0)
    assert r["AR_eS@2"] == pytest.approx(100.0)
    # image 2's object is found by a box shifted by 2 px: IoU 23*25/(2*625-575) = 0.852,
    # recalled at thresholds 0.50..0.85 (8 of 10)
    assert r["AR_gS@2"] == pytest.approx(80.0)
    assert r["AR_Normal@3"] is None  # no ground truth in the bucket
    assert "| proposals |" in format_recall_table({"RPN": r})


def test_nonfinite_proposals_are_dropped_with_one_warning(caplog):
    """A diverged RPN's NaN/inf proposals are not counted as recalling anything: one object,
    found only by a finite proposal ranked below the NaN ones."""
    dicts = [{"image_id": 1, "height": 100, "width": 100, "annotations": [make_annotation([0, 0, 10, 10], 0),
                                                                           make_annotation([50, 50, 10, 10], 0)]}]
    nan, inf = np.nan, np.inf
    props = [{"image_id": 1, "boxes": np.array([[nan] * 4, [nan, 0, 10, 10], [50, 50, 60, inf], [0, 0, 10, 10]]),
              "scores": np.array([9.0, 8.0, 7.0, 1.0])}]
    r = proposal_recall(dicts, props, "coco", max_proposals=(1, 4))
    # top-1 among finite proposals is the copy of the first object: 1 of 2 recalled
    assert r["AR@1"] == pytest.approx(50.0) and r["AR@4"] == pytest.approx(50.0)
    assert [m.getMessage() for m in caplog.records if "NaN or infinite" in m.getMessage()] == [
        "proposals: 3 of 4 detections have a NaN or infinite box or score and are not evaluated "
        "(they would match any ground truth); a diverged model?"]
