"""
CRPN: CFINet's coarse-to-fine region proposal network (projects/CFINet/README.md).

Stage 1 regresses one square anchor per location (side 2 x stride) on every level with a
dilated 3x3 conv, trained only for regression with the area-based dynamic IoU threshold.
Its detached, clipped boxes become the anchors of stage 2, whose adaptive convolution
samples the features on each refined box (centre, edge midpoints, corners) and predicts
objectness and a second regression. Both regressions use an IoU loss on decoded boxes.

Detectron2 parts reused: ``DefaultAnchorGenerator``, ``Box2BoxTransform``,
``pairwise_iou``, ``subsample_labels``, ``find_top_rpn_proposals`` (per-level top-k and
per-level NMS), ``DeformConv`` (through :class:`sod2.layers.AdaptiveConv`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.proposal_generator.build import PROPOSAL_GENERATOR_REGISTRY
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from torch import nn

from ....layers import iou_loss
from .adaptive_conv import AdaptiveConv
from ...matchers import MaxIoUMatcher
from .dynamic_iou import DynamicIoUAssigner
from ...training import put_scalars

__all__ = ["CRPN", "CRPNHead", "CRPNTargets"]

logger = logging.getLogger(__name__)


@dataclass
class CRPNTargets:
    """Both stages' targets of one image (A anchors of all levels).

    Attributes:
        stage1_pos: (P1,) indices of the stage-1 positive anchors.
        stage1_gt_boxes: (P1, 4) the ground-truth box each of them regresses to.
        stage2_labels: (A,) 1 sampled positive, 0 sampled negative, -1 not sampled.
        stage2_pos: (P2,) indices of the sampled stage-2 positives.
        stage2_gt_boxes: (P2, 4) their ground-truth boxes.
    """
    stage1_pos: torch.Tensor
    stage1_gt_boxes: torch.Tensor
    stage2_labels: torch.Tensor
    stage2_pos: torch.Tensor
    stage2_gt_boxes: torch.Tensor


def _stds_to_weights(stds: Sequence[float]) -> Tuple[float, ...]:
    """MMDetection's delta stds as Detectron2 Box2BoxTransform weights (1 / std)."""
    return tuple(1.0 / s for s in stds)


class CRPNHead(nn.Module):
    """The two stages' layers, shared across levels.

    * stage 1: 3x3 conv, dilation 3, with bias + ReLU (its output also replaces the level
      features given to stage 2), then a 1x1 conv -> 4 deltas per location;
    * stage 2: adaptive conv (3x3 deformable, no bias) + ReLU, then 1x1 convs -> 1
      objectness logit and 4 deltas per location.
    All convs are initialised N(0, 0.01), as in the official implementation.
    """

    def __init__(self, in_channels: int, dilation: int = 3, adaptive: bool = True):
        super().__init__()
        self.s1_conv = nn.Conv2d(in_channels, in_channels, 3, padding=dilation, dilation=dilation)
        self.s1_reg = nn.Conv2d(in_channels, 4, 1)
        # without the adaptive conv (ablation), stage 2 uses a plain 3x3 conv
        self.s2_conv = AdaptiveConv(in_channels, in_channels) if adaptive else \
            nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=False)
        self.s2_cls = nn.Conv2d(in_channels, 1, 1)
        self.s2_reg = nn.Conv2d(in_channels, 4, 1)
        for m in (self.s1_conv, self.s1_reg, self.s2_cls, self.s2_reg):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        if not adaptive:
            nn.init.normal_(self.s2_conv.weight, std=0.01)
        self.adaptive = adaptive

    def stage1(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(N, C, H, W) -> refined features (N, C, H, W), deltas (N, 4, H, W)."""
        y = torch.relu(self.s1_conv(x))
        return y, self.s1_reg(y)

    def stage2(self, x: torch.Tensor, boxes: torch.Tensor, stride: float
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Features (N, C, H, W) and stage-1 boxes (N, H*W, 4) -> logits (N, 1, H, W),
        deltas (N, 4, H, W)."""
        y = self.s2_conv(x, boxes, stride) if self.adaptive else torch.relu(self.s2_conv(x))
        return self.s2_cls(y), self.s2_reg(y)


def _flatten(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k, H, W) -> (N, H*W, k) (one anchor per location)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, k)


@PROPOSAL_GENERATOR_REGISTRY.register()
class CRPN(nn.Module):
    """Coarse-to-fine RPN with Detectron2's proposal-generator interface:
    ``forward(images, features, gt_instances) -> (proposals, losses)``.

    Ground-truth sizes for the dynamic threshold come from ``gt_instances.gt_orig_areas``
    (original-image areas, set by :class:`sod2.data.SODDatasetMapper` for every transform
    that scales), as in the official code; inputs without the field fall back to the areas
    in network-input pixels (with a warning).
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: List[str],
        head: CRPNHead,
        anchor_generator: DefaultAnchorGenerator,
        stage1_assigner: DynamicIoUAssigner,
        stage2_matcher: MaxIoUMatcher,
        stage1_box2box: Box2BoxTransform,
        stage2_box2box: Box2BoxTransform,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_topk: Tuple[int, int] = (2000, 1000),
        post_nms_topk: Tuple[int, int] = (300, 300),
        nms_thresh: Union[float, Tuple[float, float]] = (0.8, 0.5),
        min_box_size: float = 0.0,
        loss_weight: Optional[Dict[str, float]] = None,
        stage1_anchor_normalizer: float = 200.0,
        stage1_normalizer: str = "anchors",
    ):
        """
        Args:
            in_features: FPN levels, e.g. ["p2", "p3", "p4", "p5"].
            head: the layers (:class:`CRPNHead`).
            anchor_generator: one anchor per location (sizes 2 x stride, ratio 1).
            stage1_assigner / stage2_matcher: assignment of stages 1 and 2.
            stage1_box2box / stage2_box2box: delta coders (weights = 1 / MMDet stds:
                (10, 10, 2, 2) and (20, 20, 10, 10)).
            batch_size_per_image, positive_fraction: stage-2 anchor sampling.
            pre_nms_topk, post_nms_topk, nms_thresh: (train, test) proposal selection.
            loss_weight: weights of ``loss_crpn_reg_s1``, ``loss_crpn_cls``,
                ``loss_crpn_reg_s2`` (default 9.0, 0.9, 9.0).
            stage1_anchor_normalizer: with ``stage1_normalizer="anchors"``, the stage-1 loss
                is divided by (#images x #anchors) / this (the official "anchors / 200").
            stage1_normalizer: "anchors" (official) or "positives" (divide by the number of
                positive anchors: independent of image size and object density, whereas the
                official normaliser makes the loss grow with the density of positives).
        """
        super().__init__()
        self.in_features = list(in_features)
        self.head = head
        self.anchor_generator = anchor_generator
        if any(n != 1 for n in anchor_generator.num_anchors):
            raise ValueError("CRPN needs one anchor per location (one size, one aspect ratio)")
        self.stage1_assigner, self.stage2_matcher = stage1_assigner, stage2_matcher
        self.stage1_box2box, self.stage2_box2box = stage1_box2box, stage2_box2box
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.pre_nms_topk = {True: int(pre_nms_topk[0]), False: int(pre_nms_topk[1])}
        self.post_nms_topk = {True: int(post_nms_topk[0]), False: int(post_nms_topk[1])}
        nms = (nms_thresh, nms_thresh) if isinstance(nms_thresh, (int, float)) else tuple(nms_thresh)
        self.nms_thresh = {True: float(nms[0]), False: float(nms[1])}
        self.min_box_size = float(min_box_size)
        self.loss_weight = {"loss_crpn_reg_s1": 9.0, "loss_crpn_cls": 0.9, "loss_crpn_reg_s2": 9.0}
        self.loss_weight.update(dict(loss_weight or {}))
        self.stage1_anchor_normalizer = stage1_anchor_normalizer
        if stage1_normalizer not in ("anchors", "positives"):
            raise ValueError(f"stage1_normalizer must be 'anchors' or 'positives', got {stage1_normalizer!r}")
        self.stage1_normalizer = stage1_normalizer
        self._warned_no_orig_areas = False

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        """Detectron2 yacs configs: ``MODEL.RPN.IN_FEATURES`` and defaults of the paper."""
        in_features = cfg.MODEL.RPN.IN_FEATURES
        shapes = [input_shape[f] for f in in_features]
        strides = [s.stride for s in shapes]
        return {
            "in_features": in_features,
            "head": CRPNHead(shapes[0].channels),
            "anchor_generator": DefaultAnchorGenerator(
                sizes=[[2 * s] for s in strides], aspect_ratios=[[1.0]], strides=strides, offset=0.0),
            "stage1_assigner": DynamicIoUAssigner(),
            "stage2_matcher": MaxIoUMatcher(),
            "stage1_box2box": Box2BoxTransform(weights=_stds_to_weights((0.1, 0.1, 0.5, 0.5))),
            "stage2_box2box": Box2BoxTransform(weights=_stds_to_weights((0.05, 0.05, 0.1, 0.1))),
        }

    # ------------------------------------------------------------------ forward
    def forward(self, images: ImageList, features: Dict[str, torch.Tensor],
                gt_instances: Optional[List[Instances]] = None):
        """
        Args:
            images: the batched images.
            features: level name -> (N, C, Hi, Wi).
            gt_instances: per image ``gt_boxes`` (and optionally ``gt_orig_areas``); training only.
        Returns:
            proposals: per image Instances with ``proposal_boxes`` and ``objectness_logits``.
            losses: dict (empty at inference).
        """
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(feats)  # per level Boxes (Hi*Wi, 4)
        strides = self.anchor_generator.strides
        N = feats[0].shape[0]

        refined_feats, deltas1, boxes1 = [], [], []
        for x, anc in zip(feats, anchors):
            y, d = self.head.stage1(x)
            d = _flatten(d, 4)  # (N, HW, 4)
            refined_feats.append(y)
            deltas1.append(d)
            b = self.stage1_box2box.apply_deltas(d.detach().reshape(-1, 4),
                                                 anc.tensor.repeat(N, 1)).reshape(N, -1, 4)
            boxes1.append(b)
        boxes1 = [self._clip(b, a.tensor, images.image_sizes) for b, a in zip(boxes1, anchors)]

        logits2, deltas2 = [], []
        for y, b, s in zip(refined_feats, boxes1, strides):
            c, d = self.head.stage2(y, b, s)
            logits2.append(_flatten(c, 1).squeeze(2))
            deltas2.append(_flatten(d, 4))

        losses = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("CRPN needs gt_instances in training")
            losses = self.losses(anchors, deltas1, boxes1, logits2, deltas2, gt_instances)

        proposals = [self.stage2_box2box.apply_deltas(d.detach().reshape(-1, 4), b.reshape(-1, 4))
                     .reshape(N, -1, 4) for d, b in zip(deltas2, boxes1)]
        proposals = find_top_rpn_proposals(
            proposals, [lg.detach() for lg in logits2], images.image_sizes,
            self.nms_thresh[self.training], self.pre_nms_topk[self.training],
            self.post_nms_topk[self.training], self.min_box_size, self.training)
        return proposals, losses

    def _clip(self, boxes: torch.Tensor, anchors: torch.Tensor, image_sizes) -> torch.Tensor:
        """Clip stage-1 boxes (N, HW, 4) to each image; non-finite boxes (a diverged model)
        are an error in training (FloatingPointError, worded as Detectron2's RPN, which raises
        on non-finite proposals in ``find_top_rpn_proposals``) and fall back to their anchors
        (HW, 4) at inference."""
        finite = torch.isfinite(boxes).all(dim=2, keepdim=True)
        if not bool(finite.all()):
            if self.training:
                raise FloatingPointError("CRPN: predicted stage-1 boxes contain Inf/NaN. Training has diverged.")
            boxes = torch.where(finite, boxes, anchors.unsqueeze(0).expand_as(boxes))
        out = []
        for b, (h, w) in zip(boxes, image_sizes):
            bx = Boxes(b.clone())
            bx.clip((h, w))
            out.append(bx.tensor)
        return torch.stack(out)

    # ----------------------------------------------------------- labels and losses
    def _gt_sizes(self, gt: Instances) -> torch.Tensor:
        """(G,) ``sqrt(w * h)`` of the ground truths in ORIGINAL image pixels: from
        ``gt_orig_areas`` (set by :class:`sod2.data.SODDatasetMapper`), else (inputs built
        by hand without it) the areas in network-input pixels, with a warning once."""
        if gt.has("gt_orig_areas"):
            return gt.gt_orig_areas.to(gt.gt_boxes.tensor).clamp(min=0).sqrt()
        if not self._warned_no_orig_areas:
            logger.warning("CRPN: gt_instances have no gt_orig_areas: the dynamic IoU threshold "
                           "uses the sizes after resizing (sod2's mapper provides the field)")
            self._warned_no_orig_areas = True
        return gt.gt_boxes.area().clamp(min=0).sqrt()

    @torch.no_grad()
    def label_anchors(self, anchors: torch.Tensor, stage1_boxes: torch.Tensor,
                      gt_instances: List[Instances]) -> List[CRPNTargets]:
        """Assign both stages' targets (no gradient).

        Args:
            anchors: (A, 4) the anchors of all levels, concatenated.
            stage1_boxes: (N, A, 4) the detached, clipped stage-1 boxes (stage 2's anchors).
            gt_instances: per image ``gt_boxes`` (G_i) and ``gt_orig_areas``.
        Returns:
            per image :class:`CRPNTargets`.
        """
        out = []
        for i, gt in enumerate(gt_instances):
            # stage 1: the area-based dynamic IoU threshold on the anchors
            matched1, labels1 = self.stage1_assigner(pairwise_iou(gt.gt_boxes, Boxes(anchors)),
                                                      self._gt_sizes(gt))
            s1_pos = torch.nonzero(labels1 == 1, as_tuple=True)[0]
            # stage 2: max-IoU on the refined boxes, then sample positives and negatives
            matched2, labels2 = self.stage2_matcher(pairwise_iou(gt.gt_boxes, Boxes(stage1_boxes[i])))
            s2_pos, s2_neg = subsample_labels(labels2, self.batch_size_per_image,
                                              self.positive_fraction, 0)
            s2_labels = torch.full((len(anchors),), -1.0, device=anchors.device)
            s2_labels[s2_pos] = 1.0
            s2_labels[s2_neg] = 0.0
            gt_boxes = gt.gt_boxes.tensor
            out.append(CRPNTargets(s1_pos, gt_boxes[matched1[s1_pos]], s2_labels, s2_pos,
                                   gt_boxes[matched2[s2_pos]]))
        return out

    def losses(self, anchors: List[Boxes], deltas1: List[torch.Tensor], boxes1: List[torch.Tensor],
               logits2: List[torch.Tensor], deltas2: List[torch.Tensor],
               gt_instances: List[Instances]) -> Dict[str, torch.Tensor]:
        """The three weighted losses.

        * ``loss_crpn_reg_s1``: IoU loss (1 - IoU) of the decoded stage-1 boxes of the
          stage-1 positives, summed, divided by (N x A) / ``stage1_anchor_normalizer`` (the
          official "anchors / 200"; or by the number of positives), times 9.0;
        * ``loss_crpn_cls``: sigmoid cross-entropy over the sampled stage-2 anchors, summed,
          divided by the number of sampled anchors (positives + negatives, the official
          avg_factor; 256 x N when every image has enough anchors), times 0.9;
        * ``loss_crpn_reg_s2``: IoU loss of the decoded stage-2 boxes of the sampled
          positives, same normaliser, times 9.0.

        Args:
            anchors: per level (Hi*Wi, 4) Boxes.
            deltas1: per level (N, Hi*Wi, 4) stage-1 deltas (with grad).
            boxes1: per level (N, Hi*Wi, 4) detached stage-1 boxes.
            logits2: per level (N, Hi*Wi) stage-2 objectness logits.
            deltas2: per level (N, Hi*Wi, 4) stage-2 deltas.
            gt_instances: per image ``gt_boxes`` and ``gt_orig_areas``.
        """
        all_anchors = Boxes.cat(anchors).tensor  # (A, 4)
        stage1_deltas = cat(deltas1, dim=1)  # (N, A, 4)
        stage1_boxes = cat(boxes1, dim=1)  # (N, A, 4)
        stage2_logits = cat(logits2, dim=1)  # (N, A)
        stage2_deltas = cat(deltas2, dim=1)  # (N, A, 4)
        N, A = stage2_logits.shape
        targets = self.label_anchors(all_anchors, stage1_boxes, gt_instances)

        s1_pred = cat([self.stage1_box2box.apply_deltas(stage1_deltas[i, t.stage1_pos], all_anchors[t.stage1_pos])
                       for i, t in enumerate(targets)])
        s2_pred = cat([self.stage2_box2box.apply_deltas(stage2_deltas[i, t.stage2_pos],
                                                        stage1_boxes[i, t.stage2_pos])
                       for i, t in enumerate(targets)])
        s2_labels = torch.stack([t.stage2_labels for t in targets])  # (N, A)
        sampled = s2_labels >= 0

        num_s1_pos = sum(len(t.stage1_pos) for t in targets)
        num_sampled = int(sampled.sum())
        put_scalars(**{"crpn/num_pos_stage1": num_s1_pos / N,
                       "crpn/num_pos_stage2": sum(len(t.stage2_pos) for t in targets) / N})

        norm1 = N * A / self.stage1_anchor_normalizer if self.stage1_normalizer == "anchors" \
            else max(num_s1_pos, 1)
        norm2 = max(num_sampled, 1)
        losses = {
            "loss_crpn_reg_s1": iou_loss(s1_pred, cat([t.stage1_gt_boxes for t in targets]),
                                         reduction="sum") / norm1,
            "loss_crpn_cls": F.binary_cross_entropy_with_logits(
                stage2_logits[sampled], s2_labels[sampled], reduction="sum") / norm2,
            "loss_crpn_reg_s2": iou_loss(s2_pred, cat([t.stage2_gt_boxes for t in targets]),
                                         reduction="sum") / norm2,
        }
        return {k: v * self.loss_weight[k] for k, v in losses.items()}
