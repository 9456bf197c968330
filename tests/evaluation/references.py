"""
Reference evaluators for the tests, written independently of sod2's array code:

* pycocotools itself (the COCO and AI-TOD protocols are pycocotools with parameters);
* SODA-D's evaluator = pycocotools with the two changes of its ``SODADeval``
  (ignore flags kept from the annotations, crowd disabled in matching);
* TinyPerson's AP evaluator = pycocotools' ``evaluateImg`` with TinyBenchmark's IoD
  fallback for unmatched detections, as a plain Python loop;
* the VisDrone toolkit = a line-by-line Python port of its MATLAB loops.
"""
import contextlib
import copy
import io
import math

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def coco_from_dict(d):
    with contextlib.redirect_stdout(io.StringIO()):
        c = COCO()
        c.dataset = copy.deepcopy(d)
        c.createIndex()
    return c


class _Quiet:
    def run(self):
        with contextlib.redirect_stdout(io.StringIO()):
            self.evaluate()
            self.accumulate()
        return self.eval["precision"], self.eval["recall"]


class PycocoEval(_Quiet, COCOeval):
    def __init__(self, gt_dict, dt_list, area_ranges, max_dets, iou_thrs=None):
        gt = coco_from_dict(gt_dict)
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(copy.deepcopy(dt_list)) if dt_list else COCO()
        if not dt_list:
            dt.dataset = {"images": gt.dataset["images"], "annotations": [],
                          "categories": gt.dataset["categories"]}
            with contextlib.redirect_stdout(io.StringIO()):
                dt.createIndex()
        super().__init__(gt, dt, "bbox")
        self.params.areaRng = [list(v) for v in area_ranges.values()]
        self.params.areaRngLbl = list(area_ranges)
        self.params.maxDets = list(max_dets)
        if iou_thrs is not None:
            self.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)


class SodaEval(PycocoEval):
    """SODADeval: `ignore` comes from the annotation; iscrowd is 0 for IoU and matching."""

    def __init__(self, gt_dict, *a, **k):
        gt_dict = copy.deepcopy(gt_dict)
        for ann in gt_dict["annotations"]:
            ann["_soda_ignore"] = ann.get("ignore", 0)
            ann["iscrowd"] = 0
        super().__init__(gt_dict, *a, **k)

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = g["_soda_ignore"]


class TinyPersonEval(PycocoEval):
    """TinyBenchmark's cocoeval with use_ignore_attr, ignore_uncertain, use_iod_for_ignore."""

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(bool(g.get("iscrowd", 0)) or bool(g.get("_orig_ignore", 0))
                                  or bool(g.get("uncertain", 0)))

    def __init__(self, gt_dict, *a, **k):
        gt_dict = copy.deepcopy(gt_dict)
        for ann in gt_dict["annotations"]:
            ann["_orig_ignore"] = ann.get("ignore", 0)
        super().__init__(gt_dict, *a, **k)

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        p = self.params
        gt = self._gts[imgId, catId]
        dt = self._dts[imgId, catId]
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:
            g["_ignore"] = 1 if (g["ignore"] or g["area"] < aRng[0] or g["area"] > aRng[1]) else 0
        gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
        gt = [gt[i] for i in gtind]
        dtind = np.argsort([-d["score"] for d in dt], kind="mergesort")
        dt = [dt[i] for i in dtind[0:maxDet]]
        iscrowd = [int(o["iscrowd"]) for o in gt]
        ious = self.ious[imgId, catId][:, gtind] if len(self.ious[imgId, catId]) > 0 else self.ious[imgId, catId]
        T, G, D = len(p.iouThrs), len(gt), len(dt)
        gtm, dtm, dtIg = np.zeros((T, G)), np.zeros((T, D)), np.zeros((T, D))
        gtIg = np.array([g["_ignore"] for g in gt])
        ign_idx = [i for i, g in enumerate(gt) if g["_ignore"]]
        if len(ious):
            for tind, t in enumerate(p.iouThrs):
                for dind, d in enumerate(dt):
                    iou = min([t, 1 - 1e-10])
                    m = -1
                    for gind in range(G):
                        if gtm[tind, gind] > 0 and not iscrowd[gind]:
                            continue
                        if m > -1 and gtIg[m] == 0 and gtIg[gind] == 1:
                            break
                        if ious[dind, gind] < iou:
                            continue
                        iou = ious[dind, gind]
                        m = gind
                    if m == -1:
                        if not ign_idx:
                            continue
                        darea = d["bbox"][2] * d["bbox"][3]
                        best, arg = None, None
                        for j in ign_idx:  # first maximum, as np.argmax
                            v = ious[dind, j]
                            iod = v / (1 + v) * (1 + gt[j]["area"] / darea)
                            if best is None or iod > best:
                                best, arg = iod, j
                        if best >= iou:
                            m = arg
                        else:
                            continue
                    dtIg[tind, dind] = gtIg[m]
                    dtm[tind, dind] = gt[m]["id"]
                    gtm[tind, m] = d["id"]
        a = np.array([d["area"] < aRng[0] or d["area"] > aRng[1] for d in dt]).reshape((1, len(dt)))
        dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
        return {"image_id": imgId, "category_id": catId, "aRng": aRng, "maxDet": maxDet,
                "dtIds": [d["id"] for d in dt], "gtIds": [g["id"] for g in gt],
                "dtMatches": dtm, "gtMatches": gtm, "dtScores": [d["score"] for d in dt],
                "gtIgnore": gtIg, "dtIgnore": dtIg}


# --------------------------------------------------------------------------------------
# VisDrone toolkit, ported loop by loop from utils/*.m (1-based indices kept in comments)


def matlab_round(v):
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def visdrone_drop(gt_rows, det_rows, H, W):
    """dropObjectsInIgr.m: rows are [x, y, w, h, score, category]."""
    cur = [r for r in gt_rows if r[5] != 0]
    regions = [[max(1, v) for v in r[:4]] for r in gt_rows if r[5] == 0]
    if not regions:
        return cur, det_rows
    M = [[0] * (W + 1) for _ in range(H + 1)]  # 1-based
    for x, y, w, h in regions:
        x, y, w, h = int(x), int(y), int(w), int(h)
        for r in range(y, min(H, y + h) + 1):
            for c in range(x, min(W, x + w) + 1):
                M[r][c] = 1
    I = [[0] * (W + 1) for _ in range(H + 1)]
    for r in range(1, H + 1):
        for c in range(1, W + 1):
            I[r][c] = M[r][c] + I[r - 1][c] + I[r][c - 1] - I[r - 1][c - 1]

    def keep(row):
        pos = [max(1, matlab_round(v)) for v in row[:4]]
        x = max(1, min(W, pos[0]))
        y = max(1, min(H, pos[1]))
        w, h = pos[2], pos[3]
        tl = I[y][x]
        tr = I[y][min(W, x + w)]
        bl = I[max(1, min(H, y + h))][x]
        br = I[max(1, min(H, y + h))][min(W, x + w)]
        return (tl + br - tr - bl) / (h * w) < 0.5

    return [r for r in cur if keep(r)], [r for r in det_rows if keep(r)]


def visdrone_eval_res(gt0, dt0, thr):
    """evalRes.m: gt0 rows [x y w h ignore], dt0 rows [x y w h score]."""
    dt = [list(r) + [0] for r in sorted(dt0, key=lambda r: -r[4])]  # stable
    gt = [list(r) for r in sorted(gt0, key=lambda r: r[4])]
    for g in gt:
        g[4] = -g[4]
    for d in dt:
        bst_oa, bstg, bstm = thr, -1, 0
        for gi, g in enumerate(gt):
            m = g[4]
            if m == 1:
                continue
            if bstm != 0 and m == -1:
                break
            w = min(d[0] + d[2], g[0] + g[2]) - max(d[0], g[0])
            h = min(d[1] + d[3], g[1] + g[3]) - max(d[1], g[1])
            if w <= 0 or h <= 0:
                oa = 0.0
            else:
                t = w * h
                u = d[2] * d[3] if m == -1 else d[2] * d[3] + g[2] * g[3] - t
                oa = t / u
            if oa < bst_oa:
                continue
            bst_oa, bstg, bstm = oa, gi, (1 if m == 0 else -1)
        if bstm == -1:
            d[5] = -1
        elif bstm == 1:
            gt[bstg][4] = 1
            d[5] = 1
    return gt, dt


def voc_ap(rec, prec):
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def visdrone_reference(images, thresholds, classes=range(1, 11), max_dets=(1, 10, 100, 500)):
    """calcAccuracy.m. ``images``: list of (gt_rows, det_rows, H, W) with rows
    [x, y, w, h, score, category]; gt score 0 = ignore, category 0 = ignored region."""
    allgt, alldet = [], []
    for gt_rows, det_rows, H, W in images:
        g, d = visdrone_drop(gt_rows, det_rows, H, W)
        allgt.append([r[:4] + [1 if r[4] == 0 else 0, r[5]] for r in g])
        alldet.append(d)
    K, T = len(classes), len(thresholds)
    AP = np.zeros((K, T))
    AR = np.zeros((K, T, len(max_dets)))
    eval_class = []
    for ci, c in enumerate(classes):
        eval_class += [ci for g in allgt if any(r[5] == c for r in g)]
        for x, thr in enumerate(thresholds):
            for y, md in enumerate(max_dets):
                gt_match, det_match = [], []
                for g, d in zip(allgt, alldet):
                    gt0 = [r[:5] for r in g if r[5] == c]
                    dt0 = [r[:5] for r in d[:md] if r[5] == c]
                    g1, d1 = visdrone_eval_res(gt0, dt0, thr)
                    gt_match += [r[4] for r in g1]
                    det_match += [(r[4], r[5]) for r in d1]
                order = sorted(range(len(det_match)), key=lambda i: -det_match[i][0])
                flags = [det_match[i][1] for i in order]
                tp = np.cumsum([f == 1 for f in flags])
                rec = tp / max(1, len(gt_match))
                if len(rec):
                    AR[ci, x, y] = max(rec) * 100
            fp = np.cumsum([f == 0 for f in flags])
            prec = tp / np.maximum(1, fp + tp)
            AP[ci, x] = voc_ap(rec, prec) * 100
    rows = np.array(eval_class, dtype=int)
    return {"AP": float(np.mean(AP[rows])), "AP50": float(np.mean(AP[rows, 0])),
            "AP75": float(np.mean(AP[rows, 5])),
            **{f"AR@{m}": float(np.mean(AR[rows, :, i])) for i, m in enumerate(max_dets)}}


# --------------------------------------------------------------------------------------
# TinyPerson miss rate: eval_MR_multisetup.py's loops with TinyBenchmark's settings


def tinyperson_mr_reference(gt_dict, dts, setups, iou_thrs=(0.25, 0.5, 0.75), max_det=1000,
                            exp_filter=1.25):
    """{(setup, iou): MR} for ``setups`` = {name: (lo, hi)} on sqrt(area)."""
    fppi_thrs = np.exp(np.arange(np.log(0.01), np.log(1) + 1e-10, np.log(100.0) / 8))
    img_ids = sorted(i["id"] for i in gt_dict["images"])
    cat_ids = sorted(c["id"] for c in gt_dict["categories"])
    dts = [dict(d, id=n + 1) for n, d in enumerate(dts)]
    out = {}
    for name, (lo, hi) in setups.items():
        gts = {}
        for g in gt_dict["annotations"]:
            g = dict(g)
            size = math.sqrt(g["area"])
            ign = g.get("ignore", 0)
            ign = 1 if (size < lo or size > hi) else ign
            if g.get("uncertain"):
                ign = 1
            g["_ignore"] = int(bool(ign))
            gts.setdefault((g["image_id"], g["category_id"]), []).append(g)
        dd = {}
        for d in dts:
            dd.setdefault((d["image_id"], d["category_id"]), []).append(d)
        ys = -np.ones((len(iou_thrs), len(fppi_thrs), len(cat_ids)))
        for k, c in enumerate(cat_ids):
            scores, dtm_all, dtig_all, npig = [], [], [], 0
            for im in img_ids:
                gt = gts.get((im, c), [])
                dt = dd.get((im, c), [])
                if not gt and not dt:
                    continue
                gt = [gt[i] for i in np.argsort([g["_ignore"] for g in gt], kind="mergesort")]
                dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")][:max_det]
                dt = [d for d in dt if lo / exp_filter <= math.sqrt(d["bbox"][2] * d["bbox"][3]) < hi * exp_filter]
                npig += sum(1 for g in gt if not g["_ignore"])
                T = len(iou_thrs)
                ious = np.zeros((len(dt), len(gt)))
                for i, d in enumerate(dt):
                    for j, g in enumerate(gt):
                        dx1, dy1, dx2, dy2 = d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]
                        gx1, gy1, gx2, gy2 = g["bbox"][0], g["bbox"][1], g["bbox"][0] + g["bbox"][2], g["bbox"][1] + g["bbox"][3]
                        uw = min(dx2, gx2) - max(dx1, gx1)
                        if uw <= 0:
                            continue
                        uh = min(dy2, gy2) - max(dy1, gy1)
                        if uh <= 0:
                            continue
                        t = uw * uh
                        darea = d["bbox"][2] * d["bbox"][3]
                        ious[i, j] = t / (darea if g["_ignore"] else darea + g["bbox"][2] * g["bbox"][3] - t)
                ign_idx = [j for j, g in enumerate(gt) if g["_ignore"]]
                dtm, dtig = np.zeros((T, len(dt))), np.zeros((T, len(dt)))
                for ti, thr in enumerate(iou_thrs):
                    gtm = np.zeros(len(gt))
                    for di, d in enumerate(dt):
                        bst_oa, bstg, bstm = min(thr, 1 - 1e-10), -2, -2
                        for gi, g in enumerate(gt):
                            if gtm[gi] > 0:
                                continue
                            if bstm != -2 and g["_ignore"] == 1:
                                break
                            if ious[di, gi] < bst_oa:
                                continue
                            bst_oa, bstg, bstm = ious[di, gi], gi, (1 if g["_ignore"] == 0 else -1)
                        if bstg == -2:
                            if not ign_idx:
                                continue
                            dA = d["bbox"][2] * d["bbox"][3]
                            f = [ious[di, j] / (1 + ious[di, j]) * (1 + gt[j]["area"] / dA) for j in ign_idx]
                            j = int(np.argmax(f))
                            if f[j] > 0.5:
                                bstg, bstm = ign_idx[j], -1
                            else:
                                continue
                        dtig[ti, di] = gt[bstg]["_ignore"]
                        dtm[ti, di] = gt[bstg]["id"]
                        if bstm == 1:
                            gtm[bstg] = d["id"]
                scores += [d["score"] for d in dt]
                dtm_all.append(dtm)
                dtig_all.append(dtig)
            if npig == 0:
                continue
            inds = np.argsort(-np.array(scores), kind="mergesort")
            dtm = np.concatenate(dtm_all, axis=1)[:, inds]
            dtig = np.concatenate(dtig_all, axis=1)[:, inds]
            for ti in range(len(iou_thrs)):
                tp = np.cumsum(np.logical_and(dtm[ti], np.logical_not(dtig[ti]))).astype(float)
                fp = np.cumsum(np.logical_and(np.logical_not(dtm[ti]), np.logical_not(dtig[ti]))).astype(float)
                recall = (tp / npig).tolist()
                q = [0.0] * len(fppi_thrs)
                try:
                    for ri, pi in enumerate(np.searchsorted(fp / len(img_ids), fppi_thrs, side="right") - 1):
                        q[ri] = recall[pi]
                except IndexError:
                    pass
                ys[ti, :, k] = q
        for ti, thr in enumerate(iou_thrs):
            mrs = 1 - ys[ti]
            if len(mrs[mrs < 2]) == 0:
                out[(name, thr)] = None
            else:
                with np.errstate(divide="ignore"):
                    out[(name, thr)] = float(np.exp(np.mean(np.log(mrs[mrs < 2]))))
    return out
