"""
Export-friendly inference of sod2's Detectron2-style detectors for
``torch.onnx.export(..., dynamo=True)`` (fixed or dynamic height/width, batch 1):
:class:`RCNNExportModule` for ``GeneralizedRCNN`` (Faster R-CNN with ``StandardROIHeads``,
Cascade R-CNN, CFINet: sod2's CRPN + ``FeatureImitationROIHeads``, each with or without SR-TOD) and
:class:`RetinaNetExportModule` for ``RetinaNet`` (plain and SR-TOD);
:func:`build_rcnn_export_module` picks one. A feature hook (SR-TOD's reconstruction, ``model.feature_hook``)
runs inside the graph (its raw input, zero-padded like the batch, is built from the input). CRPN's adaptive convolution is the
model's own CPU path (``deform_conv_sampled``: ONNX ``GridSample``), so eager outputs stay
bit-identical to the model's on the CPU.

:class:`RCNNExportModule` reuses the model's own submodules (backbone, RPN head, anchor
generator, box pooler's ROIAlign, box head, box predictor, box transforms) and re-expresses only
the data-dependent steps of Detectron2's inference so that ``torch.export`` can trace them:

* RPN (``find_top_rpn_proposals``): per level a static top-k; non-finite proposals become empty
  boxes (removed like Detectron2 removes them); per-level NMS on the level's static block (an
  empty box has IoU 0 with every box, so it suppresses nothing: the kept set of the non-empty
  boxes equals Detectron2's NMS after its filtering), then the empty ones are dropped from the
  kept indices, the levels merged by decreasing score and cut to ``post_nms_topk``.
* ``ROIPooler``: every box is pooled at every level and the level Detectron2 assigns it is
  selected with ``torch.where`` (exact; L times the ROIAlign work instead of boolean dispatch).
* ``fast_rcnn_inference``: per-class NMS on all proposals (a box below the score threshold
  scores lower than every box above it, so it cannot suppress one), then the kept indices
  below the threshold are dropped, the classes merged by decreasing score and cut to
  ``test_topk_per_image``.

NMS is ``torchvision.ops.nms`` (ONNX ``NonMaxSuppression`` through onnxscript's torch_lib) and
ROIAlign ``torchvision.ops.roi_align`` (ONNX ``RoiAlign``, ``half_pixel`` when aligned).
Batch size 1 (the graph's ``batch_index`` output is all zeros).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from detectron2.structures import ImageList
from torchvision.ops import nms

from ..modeling.meta_arch.feature_hook import FeatureHookInput

__all__ = ["RCNNExportModule", "RetinaNetExportModule", "build_rcnn_export_module"]


def _clip(boxes: torch.Tensor, h, w) -> torch.Tensor:
    """(..., 4) XYXY clipped to [0, w] x [0, h] (Detectron2's ``Boxes.clip``)."""
    x1 = boxes[..., 0].clamp(min=0, max=w)
    y1 = boxes[..., 1].clamp(min=0, max=h)
    x2 = boxes[..., 2].clamp(min=0, max=w)
    y2 = boxes[..., 3].clamp(min=0, max=h)
    return torch.stack((x1, y1, x2, y2), dim=-1)


def _grouped_nms(boxes: List[torch.Tensor], scores: List[torch.Tensor], valid: List[torch.Tensor],
                 ids: List[int], iou_threshold: float, topk: Optional[int]):
    """Vanilla batched NMS over groups given as separate static blocks.

    Args:
        boxes: per group (Ng, 4); scores: per group (Ng,); valid: per group (Ng,) bool, the
            boxes Detectron2 would have filtered out before its NMS are False (they must not be
            able to suppress a valid box: empty, or lower-scored than every valid box).
        ids: the group id of each block (class or level).
    Returns:
        index into the concatenation of the blocks (K,), the group ids (K,), sorted by
        decreasing score, K <= topk (no limit for None).
    """
    keeps, gids, offset = [], [], 0
    for b, s, v, gid in zip(boxes, scores, valid, ids):
        k = nms(b, s, iou_threshold)
        k = k[v[k]]
        keeps.append(k + offset)
        gids.append(torch.full_like(k, gid))
        offset += b.shape[0]
    keep = torch.cat(keeps)
    gid = torch.cat(gids)
    all_scores = torch.cat(scores)
    order = torch.sort(all_scores[keep], descending=True)[1][:topk]
    return keep[order], gid[order]


def _preprocess(model: nn.Module, images: torch.Tensor):
    """(1, 3, H, W) 0-255 -> (normalised, padded batch, the raw images padded like it for the
    model's feature hook, or None without one), both (1, 3, Hp, Wp) padded with zeros to the
    backbone's size divisibility like Detectron2's ``ImageList.from_tensors``."""
    d = int(model.backbone.size_divisibility)
    pc = getattr(model.backbone, "padding_constraints", None) or {}
    if pc.get("square_size", 0):
        raise TypeError("sod2 R-CNN export: square padding constraints are not supported")

    def pad(x):
        if d <= 1:
            return x
        h, w = x.shape[-2], x.shape[-1]
        return F.pad(x, (0, (w + d - 1) // d * d - w, 0, (h + d - 1) // d * d - h), value=0.0)

    raw = pad(images) if model.feature_hook is not None else None
    return pad((images - model.pixel_mean) / model.pixel_std), raw


def _check_batch_of_one(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[0] != 1 or images.shape[1] != 3:
        raise ValueError(f"sod2 R-CNN export graphs take one image (1, 3, H, W), got {tuple(images.shape)}")


def _features(model: nn.Module, images: torch.Tensor) -> Dict[str, torch.Tensor]:
    """images (1, 3, H, W) 0-255 -> the backbone's features, passed through the model's feature
    hook (SR-TOD) when it has one, as ``SOD2GeneralizedRCNN.backbone_features`` does."""
    x, raw = _preprocess(model, images)
    features = model.backbone(x)
    if model.feature_hook is None:
        return features
    batch = ImageList(x, [(images.shape[-2], images.shape[-1])])
    return model.feature_hook(features, FeatureHookInput(batch, raw, model.input_format)).features


class RCNNExportModule(nn.Module):
    """``images`` (1, 3, H, W) float32 0-255 in the model's channel order, unnormalised and
    unpadded -> ``boxes`` (M, 4) XYXY in input-image pixels, ``scores`` (M,), ``classes``
    (M,) int64, ``batch_index`` (M,) int64: the detections of
    ``model.inference(batched_inputs, do_postprocess=False)`` (before Detectron2's
    rescale to the original size).

    Args:
        model: an eval-mode sod2 ``GeneralizedRCNN`` (``SOD2GeneralizedRCNN``, CFINet's subclass; with
            or without a feature hook)
            with a Detectron2 ``RPN`` and ``StandardROIHeads`` or ``CascadeROIHeads``.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        from detectron2.modeling.proposal_generator import RPN
        from detectron2.modeling.roi_heads import CascadeROIHeads, StandardROIHeads

        from ..modeling.methods.cfinet import CRPN
        from ..modeling.methods.cfinet import FeatureImitationROIHeads

        if type(model.proposal_generator) not in (RPN, CRPN):
            raise TypeError(f"sod2 R-CNN export supports Detectron2's RPN and sod2's CRPN, got "
                            f"{type(model.proposal_generator).__name__}")
        rh = model.roi_heads
        if type(rh) not in (StandardROIHeads, CascadeROIHeads, FeatureImitationROIHeads):
            raise TypeError(f"sod2 R-CNN export supports StandardROIHeads, CascadeROIHeads and "
                            f"FeatureImitationROIHeads, got {type(rh).__name__}")
        if getattr(rh, "mask_on", False) or getattr(rh, "keypoint_on", False):
            raise TypeError("sod2 R-CNN export exports boxes only (mask/keypoint heads are on)")
        self.crpn = isinstance(model.proposal_generator, CRPN)
        self.model = model
        self.cascade = isinstance(rh, CascadeROIHeads)

    # -- RPN ----------------------------------------------------------------------------
    def _proposals(self, features: Dict[str, torch.Tensor], h, w) -> torch.Tensor:
        """-> proposal boxes (R, 4), R <= post_nms_topk, by decreasing objectness."""
        rpn = self.model.proposal_generator
        feats = [features[f] for f in rpn.in_features]
        anchors = rpn.anchor_generator(feats)
        if self.crpn:
            props, logits = self._crpn_levels(rpn, feats, anchors, h, w)
        else:
            logits, deltas = rpn.rpn_head(feats)
            logits = [s.permute(0, 2, 3, 1).flatten(1) for s in logits]
            bd = rpn.anchor_generator.box_dim
            deltas = [x.view(x.shape[0], -1, bd, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)
                      for x in deltas]
            props = rpn._decode_proposals(anchors, deltas)
        pre, post = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
        boxes_l, scores_l, valid_l = [], [], []
        for p, s in zip(props, logits):
            k = torch.sym_min(s.shape[1], pre)
            ts, ti = s[0].topk(k)
            b = p[0][ti]
            finite = torch.isfinite(b).all(dim=1) & torch.isfinite(ts)
            b = torch.where(finite[:, None], b, torch.zeros_like(b))
            ts = torch.where(finite, ts, torch.zeros_like(ts))
            b = _clip(b, h, w)
            bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
            valid = finite & (bw > rpn.min_box_size) & (bh > rpn.min_box_size)
            boxes_l.append(b)
            scores_l.append(ts)
            valid_l.append(valid)
        nms_thresh = rpn.nms_thresh[False] if isinstance(rpn.nms_thresh, (tuple, list, dict)) else rpn.nms_thresh
        keep, _ = _grouped_nms(boxes_l, scores_l, valid_l, list(range(len(props))), nms_thresh, post)
        return torch.cat(boxes_l)[keep]

    @staticmethod
    def _crpn_levels(crpn, feats, anchors, h, w):
        """sod2's CRPN.forward at inference up to ``find_top_rpn_proposals``, for one image:
        per level the stage-2 proposals (1, HW, 4) and objectness logits (1, HW)."""
        props, logits = [], []
        for x, anc, stride in zip(feats, anchors, crpn.anchor_generator.strides):
            y, d = crpn.head.stage1(x)
            d = d.permute(0, 2, 3, 1).reshape(1, -1, 4)
            b = crpn.stage1_box2box.apply_deltas(d.reshape(-1, 4), anc.tensor).reshape(1, -1, 4)
            # CRPN._clip: non-finite stage-1 boxes fall back to their anchors, then clipping
            b = torch.where(torch.isfinite(b).all(dim=2, keepdim=True), b, anc.tensor.unsqueeze(0))
            b = _clip(b, h, w)
            c, d2 = crpn.head.stage2(y, b, stride)
            logits.append(c.permute(0, 2, 3, 1).reshape(1, -1))
            d2 = d2.permute(0, 2, 3, 1).reshape(-1, 4)
            props.append(crpn.stage2_box2box.apply_deltas(d2, b.reshape(-1, 4)).reshape(1, -1, 4))
        return props, logits

    # -- ROI heads ----------------------------------------------------------------------
    def _pool(self, pooler, feats: List[torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """ROIPooler.forward for one image without boolean dispatch: (R, C, S, S)."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        if len(pooler.level_poolers) == 1:
            return pooler.level_poolers[0](feats[0], rois)
        # detectron2.modeling.poolers.assign_boxes_to_levels (FPN's Eq. 1) on a plain tensor
        size = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        lvl = torch.floor(pooler.canonical_level + torch.log2(size / pooler.canonical_box_size + 1e-8))
        lvl = torch.clamp(lvl, min=pooler.min_level, max=pooler.max_level).to(torch.int64) - pooler.min_level
        out = None
        for i, (x, p) in enumerate(zip(feats, pooler.level_poolers)):
            o = p(x, rois)
            out = o if out is None else torch.where((lvl == i)[:, None, None, None], o, out)
        return out

    def _stage(self, feats, boxes, pooler, head, predictor):
        roi = self._pool(pooler, feats, boxes)
        rh = self.model.roi_heads
        if getattr(rh, "imitation", None) is not None:
            # CFINet's FeatureImitationROIHeads at inference (its optional feature re-weighting)
            roi = rh._head_in(roi)
        x = head(roi)
        cls, deltas = predictor(x)
        return cls, deltas

    def _detect(self, features, proposals: torch.Tensor, h, w):
        rh = self.model.roi_heads
        feats = [features[f] for f in rh.box_in_features]
        if self.cascade:
            boxes_in, probs = proposals, []
            for k in range(rh.num_cascade_stages):
                if k > 0:
                    boxes_in = _clip(pred, h, w)
                cls, deltas = self._stage(feats, boxes_in, rh.box_pooler, rh.box_head[k], rh.box_predictor[k])
                predictor = rh.box_predictor[k]
                pred = predictor.box2box_transform.apply_deltas(deltas, boxes_in)
                probs.append(F.softmax(cls, dim=-1))
            scores = sum(probs) * (1.0 / rh.num_cascade_stages)
        else:
            predictor = rh.box_predictor
            cls, deltas = self._stage(feats, proposals, rh.box_pooler, rh.box_head, predictor)
            pred = predictor.box2box_transform.apply_deltas(deltas, proposals)
            scores = F.softmax(cls, dim=-1)
        R = scores.shape[0]
        finite = torch.isfinite(pred).all(dim=1) & torch.isfinite(scores).all(dim=1)
        scores = scores[:, :-1]
        C = scores.shape[1]
        ncls_reg = pred.shape[1] // 4
        boxes = _clip(pred.reshape(R, ncls_reg, 4), h, w)
        thr = predictor.test_score_thresh
        b_l, s_l, v_l = [], [], []
        for c in range(C):
            b = boxes[:, c if ncls_reg > 1 else 0]
            s = scores[:, c]
            v = finite & (s > thr)
            s = torch.where(finite, s, torch.full_like(s, -1.0))
            b = torch.where(finite[:, None], b, torch.zeros_like(b))
            b_l.append(b)
            s_l.append(s)
            v_l.append(v)
        topk = predictor.test_topk_per_image
        keep, cls_ids = _grouped_nms(b_l, s_l, v_l, list(range(C)), predictor.test_nms_thresh,
                                     topk if topk >= 0 else None)
        return torch.cat(b_l)[keep], torch.cat(s_l)[keep], cls_ids

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (1, 3, H, W) -> boxes (M, 4), scores (M,), classes (M,), batch_index (M,)."""
        _check_batch_of_one(images)
        h, w = images.shape[-2], images.shape[-1]
        features = _features(self.model, images)
        proposals = self._proposals(features, h, w)
        boxes, scores, classes = self._detect(features, proposals, h, w)
        return boxes, scores, classes, torch.zeros_like(classes)


class RetinaNetExportModule(nn.Module):
    """Detectron2's ``RetinaNet`` (sod2's ``SOD2RetinaNet``, with or without a feature hook) inference:
    ``images`` (1, 3, H, W) 0-255 -> ``boxes`` (M, 4) (not clipped, as RetinaNet does not
    clip), ``scores`` (M,), ``classes`` (M,) int64, ``batch_index`` (M,) int64, the detections
    of ``model.inference(batched_inputs, do_postprocess=False)``.

    Per level the ``test_topk_candidates`` best (anchor, class) scores over the whole level
    (static top-k), of which those above ``test_score_thresh`` are Detectron2's candidates
    (its top-k among the thresholded ones are the same entries). The class-wise NMS runs once
    per class over all candidates, those of other classes replaced by empty boxes (IoU 0:
    they suppress nothing).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        """images (1, 3, H, W) -> boxes (M, 4), scores (M,), classes (M,), batch_index (M,)."""
        _check_batch_of_one(images)
        m = self.model
        features = _features(m, images)
        features = [features[f] for f in m.head_in_features]
        logits, deltas = m._transpose_dense_predictions(m.head(features), [m.num_classes, 4])
        anchors = m.anchor_generator(features)
        C = m.num_classes
        boxes_l, scores_l, cls_l = [], [], []
        for a, lg, dl in zip(anchors, logits, deltas):
            sc = lg[0].sigmoid().flatten()
            k = torch.sym_min(sc.shape[0], m.test_topk_candidates)
            ts, ti = sc.topk(k)
            anchor_idx, cls_idx = ti // C, ti % C
            boxes_l.append(m.box2box_transform.apply_deltas(dl[0][anchor_idx], a.tensor[anchor_idx]))
            scores_l.append(ts)
            cls_l.append(cls_idx)
        boxes, scores, cls = torch.cat(boxes_l), torch.cat(scores_l), torch.cat(cls_l)
        finite = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        valid = finite & (scores > m.test_score_thresh)
        scores = torch.where(finite, scores, torch.full_like(scores, -1.0))
        b_l, s_l, v_l = [], [], []
        for c in range(C):
            this = cls == c
            b_l.append(torch.where((this & finite)[:, None], boxes, torch.zeros_like(boxes)))
            s_l.append(scores)
            v_l.append(valid & this)
        keep, classes = _grouped_nms(b_l, s_l, v_l, list(range(C)), m.test_nms_thresh,
                                     m.max_detections_per_image)
        return torch.cat(b_l)[keep], torch.cat(s_l)[keep], classes, torch.zeros_like(classes)


def build_rcnn_export_module(model: nn.Module) -> nn.Module:
    """The export wrapper of an eval-mode sod2 Detectron2-style detector: a
    :class:`RetinaNetExportModule` for a ``RetinaNet``, else a :class:`RCNNExportModule`
    (``TypeError`` naming the part that is not supported)."""
    from detectron2.modeling import RetinaNet

    if isinstance(model, RetinaNet):
        return RetinaNetExportModule(model).eval()
    return RCNNExportModule(model).eval()
