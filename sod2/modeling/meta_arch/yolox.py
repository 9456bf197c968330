"""
YOLOX (Ge et al., 2021) as a Detectron2 meta-architecture: a YOLOPAFPN backbone, a
:class:`~sod2.modeling.heads.YOLOXHead`, a :class:`~sod2.modeling.assigners.SimOTAAssigner`.

The forward runs in named steps that extensions (Foreground Probing) reuse or override:

1. ``preprocess_image``: pad the raw images with ``pad_value`` (114, YOLOX's letterbox
   colour), then normalise (mean 0, std 1 by default: YOLOX takes BGR 0-255);
2. backbone, then ``head.forward_features`` -> per-level cls/reg branch features and
   ``head.predict`` -> per-level logits;
3. :meth:`YOLOX.decode` -> :class:`YOLOXPredictions` (flattened over levels, with the
   location grid, strides and decoded XYXY boxes);
4. training: :meth:`YOLOX.label` (SimOTA per image) then :meth:`YOLOX.losses`;
   inference: :meth:`YOLOX.inference`, whose objectness logits are a separate argument.

Losses are the reference's (all summed, then divided by the number of foreground locations
of the local batch, ``max(num_fg, 1)``; not all-reduced across processes unless
``all_reduce_num_fg``):

* ``loss_iou`` = w_iou * sum over fg of the IoU loss (``iou_loss_type``) of the decoded box;
* ``loss_obj`` = w_obj * sum over ALL locations of BCE(obj, fg);
* ``loss_cls`` = w_cls * sum over fg of BCE(cls, onehot(gt class) * IoU(pred, gt));
* ``loss_l1``  = w_l1 * sum over fg of |raw reg - encoded gt| while ``use_l1`` (else 0).

Better Sampling's dense parts (Huang et al. 2024; classes in
``sod2/modeling/criterion/better_sampling.py``, config helper
``configs/common/models/dense_better_sampling.py``) change only these losses, never
inference:

* ``class_target`` (ST, :class:`ScaleAlignedTarget`): the soft target ``t`` of each
  positive's class channel is ``class_target(pred box, gt box)`` (both cxcywh, input pixels,
  the prediction detached) instead of SimOTA's matched IoU;
* ``reweighting`` (SR, :class:`SampleReweighting`): per-positive weights ``r_cls``, ``r_reg``
  from the positive location's last cls- and reg-branch features (D = the head's width), its
  target ``t`` and its detached class probability ``s = sigmoid(cls)`` on the gt class.
  ``r_cls`` multiplies the positive's classification BCE (summed over its C channels: YOLOX's
  classification loss has only positive locations, each weight 1, so the weight of a sample
  becomes ``r_cls``: ``SampleReweighting.cls_weight`` "replace" and "scale" coincide here);
  ``r_reg`` multiplies its IoU loss and its L1 loss. ``loss_obj`` is unchanged. The
  generator's parameters enter ``loss_cls`` with a zero factor (DDP sees them used in every
  step, even with no positive) and the mean / spread of the weights go to the EventStorage
  (``better_sampling/r_cls_mean`` ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.layers import batched_nms, nms
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...layers.losses import box_iou_loss
from ..assigners import SimOTAAssigner, SimOTAResult
from ..methods.better_sampling.components import log_reweighting_stats
from ..training import put_scalars, zero_dependency

__all__ = ["YOLOX", "YOLOXPredictions", "ForegroundMaps"]

DEFAULT_LOSS_WEIGHTS = {"iou": 5.0, "obj": 1.0, "cls": 1.0, "l1": 1.0}


@dataclass
class YOLOXPredictions:
    """The head's outputs of a batch of N images, flattened over the A locations of all
    levels (level by level, row-major within a level, as the reference).

    Attributes:
        cls_logits: (N, A, C).
        reg: (N, A, 4) raw box outputs (dx, dy in cells, log w, log h in strides).
        obj_logits: (N, A).
        boxes: (N, A, 4) decoded XYXY boxes in input pixels: centre ``(reg_xy + grid) * stride``,
            size ``exp(reg_wh) * stride``.
        grids: (A, 2) cell index (x, y) of each location.
        strides: (A,) stride of each location.
        level_sizes: [(H_l, W_l)] per level.
    """

    cls_logits: Tensor
    reg: Tensor
    obj_logits: Tensor
    boxes: Tensor
    grids: Tensor
    strides: Tensor
    level_sizes: List[Tuple[int, int]]

    @property
    def anchor_centers(self) -> Tensor:
        """(A, 2) cell centres ``(grid + 0.5) * stride``, SimOTA's geometry convention."""
        return (self.grids + 0.5) * self.strides[:, None]


@dataclass
class ForegroundMaps:
    """The last inference batch's foreground (objectness) probabilities, for drawing.

    Attributes:
        before, after: (N, A) sigmoid of the objectness before and after Foreground Probing
            (equal without a probe).
        level_sizes: [(H_l, W_l)]; strides: [s_l]; image_sizes: [(h, w)] of the inputs.
    """
    before: Tensor
    after: Tensor
    level_sizes: List[Tuple[int, int]]
    strides: List[int]
    image_sizes: List[Tuple[int, int]]

    def level_maps(self, which: str, i: int = 0) -> List[Tensor]:
        """Per level (H_l, W_l) maps of image ``i`` (``which`` = "before" or "after")."""
        flat, out, start = getattr(self, which)[i], [], 0
        for h, w in self.level_sizes:
            out.append(flat[start:start + h * w].view(h, w))
            start += h * w
        return out


@META_ARCH_REGISTRY.register()
class YOLOX(DenseDetector):
    """YOLOX detector (see the module docstring).

    Args:
        backbone: a Backbone (YOLOPAFPN) returning the head's levels.
        head: a :class:`YOLOXHead` (``forward_features`` / ``predict``).
        assigner: a :class:`SimOTAAssigner`.
        num_classes: C.
        head_in_features: backbone outputs fed to the head; None: all, by stride.
        pixel_mean, pixel_std: normalisation after padding; (0,0,0)/(1,1,1) = YOLOX's raw 0-255.
        input_format: "BGR" (YOLOX reads images with OpenCV).
        loss_weights: {"iou", "obj", "cls", "l1"} weights, missing keys from
            {"iou": 5, "obj": 1, "cls": 1, "l1": 1}.
        iou_loss_type: "iou" (YOLOX: 1 - IoU^2), "giou" or "ciou" (Foreground Probing).
        use_l1: adds the L1 loss on raw outputs; YOLOX turns it on for the last 15 epochs
            (the no-aug tail hook calls :meth:`set_l1_loss`; it is a plain attribute, not saved in
            checkpoints, so the hook sets it again after a resume).
        all_reduce_num_fg: normalise by the mean over processes of the batch fg count instead
            of the local count (the reference uses the local one).
        test_score_thresh: keep ``sigmoid(obj) * max_c sigmoid(cls) >= thresh`` (0.01).
        test_nms_thresh: NMS IoU threshold (0.65).
        max_detections_per_image: cap after NMS (1500 by default; None: no cap, as the
            reference, which the COCO configs use).
        class_agnostic_nms: one NMS over all classes instead of class-wise.
        pad_value: value of the padded pixels before normalisation (114 as YOLOX's letterbox).
        keep_visuals: keep the last inference batch's objectness maps before and after
            Foreground Probing in ``last_foreground`` (:class:`ForegroundMaps`, for drawing).
        class_target: Better Sampling's ST, ``(pred_boxes (F, 4), gt_boxes (F, 4)) -> (F,)``
            cxcywh -> detached class target (e.g. ``ScaleAlignedTarget``); None: SimOTA's
            matched IoU (plain YOLOX).
        reweighting: Better Sampling's SR, a ``SampleReweighting`` as wide as the head
            (``hidden_dim = head.feat_channels``); None: every positive weighs 1 (plain YOLOX).
        clip_test_boxes: clip the boxes mapped back to the original image to it and drop the
            empty ones (Detectron2's ``detector_postprocess``); False keeps them as they are,
            as the official YOLOX evaluator (the COCO configs).

    Inference maps the boxes back to each input's "height" x "width" by dividing them by the
    input's ``resize_ratio`` r when it has one (the test mapper stores it after YOLOX's official
    resize, :class:`sod2.data.transforms.YOLOXTestResize`: the official evaluator's
    ``bboxes /= r``), else by Detectron2's per-axis ``width / w, height / h`` rescale.
    """

    def __init__(self, *, backbone: Backbone, head: nn.Module, assigner: SimOTAAssigner, num_classes: int,
                 head_in_features: Optional[Sequence[str]] = None,
                 pixel_mean: Sequence[float] = (0.0, 0.0, 0.0), pixel_std: Sequence[float] = (1.0, 1.0, 1.0),
                 input_format: str = "BGR", loss_weights: Optional[Dict[str, float]] = None,
                 iou_loss_type: str = "iou", use_l1: bool = False, all_reduce_num_fg: bool = False,
                 test_score_thresh: float = 0.01, test_nms_thresh: float = 0.65,
                 max_detections_per_image: Optional[int] = 1500, class_agnostic_nms: bool = False,
                 pad_value: float = 114.0, keep_visuals: bool = False,
                 class_target: Optional[Callable[[Tensor, Tensor], Tensor]] = None,
                 reweighting: Optional[nn.Module] = None, clip_test_boxes: bool = True):
        super().__init__(backbone, head, list(head_in_features) if head_in_features is not None else None,
                         pixel_mean=list(pixel_mean), pixel_std=list(pixel_std))
        self.assigner = assigner
        self.num_classes = num_classes
        self.input_format = input_format
        unknown = set(loss_weights or {}) - set(DEFAULT_LOSS_WEIGHTS)
        if unknown:
            raise ValueError(f"YOLOX loss_weights: unknown keys {sorted(unknown)}")
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **dict(loss_weights or {})}
        box_iou_loss(torch.zeros(0, 4), torch.zeros(0, 4), iou_loss_type)  # validates the type
        self.iou_loss_type = iou_loss_type
        self.use_l1 = use_l1
        self.all_reduce_num_fg = all_reduce_num_fg
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        self.class_agnostic_nms = class_agnostic_nms
        self.pad_value = pad_value
        self.keep_visuals = keep_visuals
        self.last_foreground: Optional[ForegroundMaps] = None
        shapes = self.backbone.output_shape()
        self.head_strides = [shapes[f].stride for f in self.head_in_features]
        width = getattr(head, "feat_channels", None)
        if reweighting is not None and width is not None and getattr(reweighting, "hidden_dim", width) != width:
            raise ValueError(f"YOLOX: reweighting.hidden_dim ({reweighting.hidden_dim}) must equal the head's "
                             f"feat_channels ({width})")
        self.class_target = class_target
        self.reweighting = reweighting
        self.clip_test_boxes = clip_test_boxes

    # ------------------------------------------------------------------ steps
    def preprocess_image(self, batched_inputs: List[Dict[str, Tensor]]) -> ImageList:
        """Pad the raw (3, H_i, W_i) images with ``pad_value`` into (N, 3, H, W) (size
        divisibility from the backbone, and its square size at inference), then normalise."""
        images = [self._move_to_current_device(x["image"]).to(self.pixel_mean.dtype) for x in batched_inputs]
        constraints = dict(self.backbone.padding_constraints or {})
        if self.training:  # the square is the test-time letterbox; training batches come
            constraints.pop("square_size", None)  # letterboxed (and multi-scale resized) already
        images = ImageList.from_tensors(images, self.backbone.size_divisibility, pad_value=self.pad_value,
                                        padding_constraints=constraints)
        images = ImageList((images.tensor - self.pixel_mean) / self.pixel_std, images.image_sizes)
        from ..checks import warn_non_finite_images  # one warning line on NaN/inf pixels
        warn_non_finite_images(images.tensor, "YOLOX", batched_inputs, self.training)
        return images

    def decode(self, cls_logits: List[Tensor], reg: List[Tensor], obj_logits: List[Tensor]) -> YOLOXPredictions:
        """Flatten the per-level outputs and decode the boxes.

        Args:
            cls_logits: per level (N, C, H_l, W_l); reg: per level (N, 4, H_l, W_l);
            obj_logits: per level (N, 1, H_l, W_l); levels in ``head_in_features`` order.
        """
        def flat(xs):
            return torch.cat([x.flatten(2).permute(0, 2, 1) for x in xs], dim=1)

        grids, strides, sizes = [], [], []
        for x, s in zip(reg, self.head_strides):
            h, w = x.shape[-2:]
            yv, xv = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device),
                                    indexing="ij")
            grids.append(torch.stack([xv, yv], dim=-1).view(-1, 2))
            strides.append(torch.full((h * w,), float(s), device=x.device))
            sizes.append((h, w))
        grid = torch.cat(grids).to(reg[0].dtype)
        stride = torch.cat(strides).to(reg[0].dtype)
        cls_f, reg_f, obj_f = flat(cls_logits), flat(reg), flat(obj_logits).squeeze(-1)
        xy = (reg_f[..., :2] + grid) * stride[:, None]
        wh = torch.exp(reg_f[..., 2:]) * stride[:, None]
        boxes = torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)
        return YOLOXPredictions(cls_f, reg_f, obj_f, boxes, grid, stride, sizes)

    def set_l1_loss(self, enabled: bool) -> None:
        """Switch the L1 loss on raw box outputs (``loss_l1``, ``use_l1``) on or off; the
        no-aug tail (:class:`sod2.engine.hooks.NoAugTail`) turns it on."""
        self.use_l1 = bool(enabled)

    @torch.no_grad()
    def label(self, preds: YOLOXPredictions, gt_instances: List[Instances]) -> List[SimOTAResult]:
        """SimOTA per image (no gradient). Returns one :class:`SimOTAResult` per image:
        ``fg_mask`` (A,), ``matched_gt`` (F_i,), ``matched_iou`` (F_i,), ``num_fg``."""
        centers = preds.anchor_centers
        return [self.assigner(preds.boxes[i].detach(), preds.cls_logits[i].detach(),
                              preds.obj_logits[i].detach(), centers, preds.strides,
                              gt.gt_boxes.tensor, gt.gt_classes)
                for i, gt in enumerate(gt_instances)]

    def normalizer(self, assignments: List[SimOTAResult]) -> float:
        """``max(total fg of the batch, 1)``; the mean over processes when ``all_reduce_num_fg``."""
        num_fg = float(sum(a.num_fg for a in assignments))
        if self.all_reduce_num_fg and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor(num_fg, device=self.device)
            dist.all_reduce(t)
            num_fg = t.item() / dist.get_world_size()
        return max(num_fg, 1.0)

    def l1_targets(self, gt_boxes: Tensor, grids: Tensor, strides: Tensor, eps: float = 1e-8) -> Tensor:
        """Encode (F, 4) XYXY gt boxes like the raw reg outputs at (F, 2) grid cells with (F,)
        strides: ``(cx / s - gx, cy / s - gy, log(w / s + eps), log(h / s + eps))``."""
        s = strides[:, None]
        cxcy = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
        return torch.cat([cxcy / s - grids, torch.log(wh / s + eps)], dim=1)

    @staticmethod
    def gather_locations(feats: List[Tensor], mask: Tensor) -> Tensor:
        """The features of the locations in ``mask``, in the order of ``mask.nonzero()`` (that
        of ``preds.cls_logits[mask]``), gathered straight from the per-level maps.

        Args:
            feats: per level (N, D, H_l, W_l), levels in the order of the flattened predictions.
            mask: (N, A) bool.
        Returns:
            (F, D), with gradients.
        """
        n, a = mask.nonzero(as_tuple=True)
        out, start = feats[0].new_zeros(n.numel(), feats[0].shape[1]), 0
        for f in feats:
            hw = f.shape[2] * f.shape[3]
            sel = ((a >= start) & (a < start + hw)).nonzero(as_tuple=True)[0]
            if sel.numel():
                out = out.index_put((sel,), f.flatten(2)[n[sel], :, a[sel] - start])
            start += hw
        return out

    def losses(self, preds: YOLOXPredictions, gt_instances: List[Instances],
               assignments: List[SimOTAResult],
               features: Optional[Tuple[List[Tensor], List[Tensor]]] = None) -> Dict[str, Tensor]:
        """The weighted loss terms (see the module docstring).

        Args:
            features: the head's ``(cls_feats, reg_feats)`` (per level (N, D, H_l, W_l)); needed
                with ``reweighting`` (SR) only.
        """
        C = self.num_classes
        dtype = preds.cls_logits.dtype
        fg = torch.stack([a.fg_mask for a in assignments])  # (N, A)
        onehot, ious, labels, box_t, l1_t = [], [], [], [], []
        for a, gt in zip(assignments, gt_instances):
            boxes = gt.gt_boxes.tensor[a.matched_gt]
            classes = gt.gt_classes[a.matched_gt].long()
            onehot.append(F.one_hot(classes, C).to(dtype))
            ious.append(a.matched_iou.to(dtype))
            labels.append(classes)
            box_t.append(boxes)
            if self.use_l1:
                l1_t.append(self.l1_targets(boxes, preds.grids[a.fg_mask], preds.strides[a.fg_mask]))
        box_t = torch.cat(box_t).to(preds.boxes.dtype)
        if self.class_target is None:
            target = torch.cat(ious)
        else:  # ST: on cxcywh boxes in input pixels, the prediction detached
            target = self.class_target(box_convert(preds.boxes[fg].detach().float(), "xyxy", "cxcywh"),
                                       box_convert(box_t.float(), "xyxy", "cxcywh")).to(dtype)
        cls_t = torch.cat(onehot) * target[:, None]
        r_cls = r_reg = None
        if self.reweighting is not None:
            if features is None:
                raise ValueError("YOLOX: sample reweighting needs the head's features (losses(..., features=))")
            labels = torch.cat(labels)
            score = torch.sigmoid(preds.cls_logits[fg].detach().gather(1, labels[:, None])[:, 0])
            r_cls, r_reg = self.reweighting(self.gather_locations(features[0], fg),
                                            self.gather_locations(features[1], fg), target, score)
        num_fg = self.normalizer(assignments)
        num_gts = sum(len(g) for g in gt_instances)
        put_scalars(**{"yolox/num_fg_per_gt": sum(a.num_fg for a in assignments) / max(num_gts, 1)})
        w = self.loss_weights
        if r_reg is None:
            loss_iou = box_iou_loss(preds.boxes[fg], box_t, self.iou_loss_type, reduction="sum") / num_fg
        else:
            loss_iou = (box_iou_loss(preds.boxes[fg], box_t, self.iou_loss_type) * r_reg).sum() / num_fg
        loss_obj = F.binary_cross_entropy_with_logits(preds.obj_logits, fg.to(preds.obj_logits.dtype),
                                                      reduction="sum") / num_fg
        if r_cls is None:
            loss_cls = F.binary_cross_entropy_with_logits(preds.cls_logits[fg], cls_t, reduction="sum") / num_fg
        else:
            loss_cls = (F.binary_cross_entropy_with_logits(preds.cls_logits[fg], cls_t, reduction="none").sum(dim=1)
                        * r_cls).sum() / num_fg
        out = {"loss_iou": w["iou"] * loss_iou, "loss_obj": w["obj"] * loss_obj, "loss_cls": w["cls"] * loss_cls}
        if self.use_l1:
            l1_target = torch.cat(l1_t).to(preds.reg.dtype)
            if r_reg is None:
                out["loss_l1"] = w["l1"] * F.l1_loss(preds.reg[fg], l1_target, reduction="sum") / num_fg
            else:
                out["loss_l1"] = w["l1"] * (F.l1_loss(preds.reg[fg], l1_target, reduction="none").sum(dim=1)
                                            * r_reg).sum() / num_fg
        else:
            out["loss_l1"] = preds.reg.sum() * 0.0
        if self.reweighting is not None:
            # every generator parameter takes part in the graph even when it gets no gradient
            # (no positive in the batch), so DDP needs no find_unused_parameters
            out["loss_cls"] = out["loss_cls"] + zero_dependency(self.reweighting)
            log_reweighting_stats(r_cls, r_reg)
        return out

    def inference(self, preds: YOLOXPredictions, obj_logits: Tensor,
                  image_sizes: List[Tuple[int, int]]) -> List[Instances]:
        """Scores, threshold, NMS and cap, in input-image coordinates (not clipped).

        Args:
            preds: the decoded predictions (boxes and class logits are used).
            obj_logits: (N, A) objectness logits to score with (``preds.obj_logits`` or a
                refined version of it).
            image_sizes: [(h, w)] of the unpadded inputs.
        Returns:
            per image, Instances with pred_boxes (XYXY), scores, pred_classes, sorted by score.
        """
        cls_prob = preds.cls_logits.sigmoid()
        obj_prob = obj_logits.sigmoid()
        results = []
        for i, size in enumerate(image_sizes):
            class_conf, classes = cls_prob[i].max(dim=1)
            scores = obj_prob[i] * class_conf
            # a box whose exp(log size) overflowed (an untrained or diverging model) is dropped
            keep = (scores >= self.test_score_thresh) & torch.isfinite(preds.boxes[i]).all(dim=1)
            boxes, scores, classes = preds.boxes[i][keep], scores[keep], classes[keep]
            if self.class_agnostic_nms:
                keep = nms(boxes, scores, self.test_nms_thresh)
            else:
                keep = batched_nms(boxes, scores, classes, self.test_nms_thresh)
            keep = keep[: self.max_detections_per_image]
            results.append(Instances(size, pred_boxes=Boxes(boxes[keep]), scores=scores[keep],
                                     pred_classes=classes[keep]))
        return results

    # ------------------------------------------------------ foreground probing
    @staticmethod
    def valid_locations(preds: YOLOXPredictions, image_sizes: List[Tuple[int, int]]) -> Tensor:
        """(N, A) bool: the location's cell centre lies inside the image (not in the batch
        padding)."""
        c = preds.anchor_centers
        hw = torch.tensor(image_sizes, device=c.device, dtype=c.dtype)  # (N, 2) as (h, w)
        return (c[None, :, 0] < hw[:, 1:2]) & (c[None, :, 1] < hw[:, 0:1])

    @torch.no_grad()
    def probe_targets(self, preds: YOLOXPredictions, gt_instances: List[Instances],
                      assignments: List[SimOTAResult]) -> Tensor:
        """(N, A) foreground label of every location for L_ref: a SimOTA positive
        (``probe.target="assignment"``) or IoU of its decoded box with its best ground truth
        >= ``probe.iou_thresh`` (``"iou"``)."""
        probe = self.head.probe
        if probe.target == "assignment":
            return torch.stack([a.fg_mask for a in assignments])
        out = torch.zeros(preds.obj_logits.shape, dtype=torch.bool, device=preds.obj_logits.device)
        for i, gt in enumerate(gt_instances):
            if len(gt):
                iou = pairwise_iou(Boxes(preds.boxes[i]), gt.gt_boxes)  # (A, G)
                out[i] = iou.max(dim=1).values >= probe.iou_thresh
        return out

    def run_probe(self, preds: YOLOXPredictions, cls_feats: List[Tensor], reg_feats: List[Tensor],
                  image_sizes: List[Tuple[int, int]]) -> Tuple[Tensor, Tensor, Tensor]:
        """STSM + FRM of ``head.probe`` on this batch: the K locations of highest objectness
        inside each image, their features gathered from the per-level maps (with gradients).
        Returns idx (N, K), refined logits (N, K), lambda (N,)."""
        probe = self.head.probe
        idx = probe.select(preds.obj_logits, self.valid_locations(preds, image_sizes))
        refined, lam = probe.refine(probe.gather_levels(cls_feats, idx), probe.gather_levels(reg_feats, idx))
        return idx, refined, lam

    # ---------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's contract: losses in training, [{"instances": Instances}] (rescaled to
        each input's "height"/"width" and clipped) in inference. With ``head.probe`` (Foreground
        Probing) the K selected locations get refined objectness: L_ref in training, their
        objectness replaced at inference."""
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        cls_feats, reg_feats = self.head.forward_features(features)
        preds = self.decode(*self.head.predict(cls_feats, reg_feats))
        probe = self.head.probe
        if probe is not None:
            idx, refined, lam = self.run_probe(preds, cls_feats, reg_feats, images.image_sizes)
        if self.training:
            assert "instances" in batched_inputs[0], "Instance annotations are missing in training!"
            gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
            assignments = self.label(preds, gt_instances)
            losses = self.losses(preds, gt_instances, assignments, features=(cls_feats, reg_feats))
            if probe is not None:
                losses.update(probe.losses(refined, idx, self.probe_targets(preds, gt_instances, assignments)))
                put_scalars(**{"fgprobe/lambda": lam.detach().mean().item()})
            return losses
        obj_logits = preds.obj_logits if probe is None else probe.apply(preds.obj_logits, idx, refined)
        if self.keep_visuals:
            self.last_foreground = ForegroundMaps(preds.obj_logits.sigmoid().detach(), obj_logits.sigmoid().detach(),
                                                  preds.level_sizes, self.head_strides, list(images.image_sizes))
        results = self.inference(preds, obj_logits, images.image_sizes)
        return [{"instances": self.map_to_original(r, x)} for r, x in zip(results, batched_inputs)]

    def map_to_original(self, results: Instances, x: Dict) -> Instances:
        """Map detections in network-input pixels to the input's original image.

        Args:
            results: Instances of the (h, w) resized input (``image_size``), XYXY ``pred_boxes``.
            x: the model input dict: "height"/"width" (default h, w) and optional
                ``resize_ratio`` r (YOLOX's official test resize).
        Returns:
            Instances of size (height, width): boxes / r when ``resize_ratio`` is given, else
            x ``width / w`` and ``height / h`` per axis; clipped and the empty ones dropped
            with ``clip_test_boxes``.
        """
        h, w = results.image_size
        H, W = x.get("height", h), x.get("width", w)
        ratio = x.get("resize_ratio")
        if ratio is None and self.clip_test_boxes:
            return detector_postprocess(results, H, W)  # Detectron2's path, unchanged
        boxes = results.pred_boxes.tensor
        if ratio is not None:
            ratio = float(ratio)
            if not (math.isfinite(ratio) and ratio > 0):
                raise ValueError(f"YOLOX: resize_ratio must be a positive finite number, got {ratio}")
            # a same-device float32 divisor: the official CPU ``bboxes /= r`` bit for bit (CUDA
            # turns a division by a Python scalar into a multiplication by its reciprocal)
            boxes = boxes / torch.tensor(ratio, dtype=boxes.dtype, device=boxes.device)
        else:
            boxes = boxes * boxes.new_tensor([W / w, H / h, W / w, H / h])
        out = Instances((int(H), int(W)), **{k: v for k, v in results.get_fields().items() if k != "pred_boxes"})
        out.pred_boxes = Boxes(boxes)
        if self.clip_test_boxes:
            out.pred_boxes.clip(out.image_size)
            out = out[out.pred_boxes.nonempty()]
        return out
