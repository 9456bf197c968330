"""
YOLOX (Ge et al., 2021) as a Detectron2 meta-architecture: a YOLOPAFPN backbone, a
:class:`~sod2.modeling.heads.YOLOXHead`, a :class:`~sod2.modeling.assigners.SimOTAAssigner`.

It fills Detectron2's :class:`DenseDetector` contract: ``DenseDetector.forward`` runs
``preprocess_image``, the backbone and the head (a :class:`YOLOXHeadOutput`), then
:meth:`YOLOX.forward_training` or :meth:`YOLOX.forward_inference`. Both build one
:class:`YOLOXStep` (the head's output, its :meth:`YOLOX.decode` -> :class:`YOLOXPredictions`,
the input sizes and, in training, the ground truth and SimOTA's assignments) and hand it to
typed hooks whose defaults ARE plain YOLOX. Methods enter by subclassing and overriding them
(``sod2/modeling/methods``); this file holds no method code:

* :meth:`YOLOX.extra_losses` ``(step) -> {}``: more loss terms (Foreground Probing's L_ref);
* :meth:`YOLOX.inference_objectness` ``(step) -> (N, A)``: the objectness logits inference
  scores with (``step.preds.obj_logits``; Foreground Probing refines K of them);
* :meth:`YOLOX.class_targets` ``(step, fg, gt_boxes) -> (F,)``: the soft target of each
  positive's class channel (SimOTA's matched IoU; Better Sampling's ST replaces it);
* :meth:`YOLOX.positive_weights` ``(step, fg, target, labels) -> None | (r_cls, r_reg)``:
  per-positive weights of the classification and box losses (None: every positive weighs 1;
  Better Sampling's SR).

Losses are the reference's (all summed, then divided by the number of foreground locations
of the local batch, ``max(num_fg, 1)``; not all-reduced across processes unless
``all_reduce_num_fg``), with the weights ``r_cls``/``r_reg`` of :meth:`YOLOX.positive_weights`
where given:

* ``loss_iou`` = w_iou * sum over fg of r_reg * the IoU loss (``iou_loss_type``) of the decoded box;
* ``loss_obj`` = w_obj * sum over ALL locations of BCE(obj, fg);
* ``loss_cls`` = w_cls * sum over fg of r_cls * BCE(cls, onehot(gt class) * t) summed over the
  C channels, t = :meth:`YOLOX.class_targets` (the matched IoU);
* ``loss_l1``  = w_l1 * sum over fg of r_reg * |raw reg - encoded gt| while ``use_l1`` (else 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from detectron2.layers import batched_nms, nms
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.modeling.meta_arch.dense_detector import DenseDetector
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import Tensor, nn

from ...layers.losses import box_iou_loss
from ..assigners import SimOTAAssigner, SimOTAResult
from ..heads.yolox_head import YOLOXHeadOutput
from ..training import put_scalars

__all__ = ["YOLOX", "YOLOXPredictions", "YOLOXStep", "ForegroundMaps"]

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
class YOLOXStep:
    """One forward pass of :class:`YOLOX`, handed to its hooks (module docstring).

    Attributes:
        preds: the decoded predictions (:class:`YOLOXPredictions`, A locations).
        head: the head's output (branch features and per-level predictions); None only where a
            caller builds a step from predictions alone (tests).
        image_sizes: (N, 2) (h, w) of each unpadded input in network-input pixels (a tensor, so
            that the export graph computes it from the input's shape).
        gt_instances: training only: per image the ground truth (``gt_boxes`` XYXY, ``gt_classes``).
        assignments: training only: per image SimOTA's :class:`SimOTAResult`.
    """

    preds: YOLOXPredictions
    head: Optional[YOLOXHeadOutput] = None
    image_sizes: Optional[Tensor] = None
    gt_instances: Optional[List[Instances]] = None
    assignments: Optional[List[SimOTAResult]] = None


@dataclass
class ForegroundMaps:
    """One image's foreground (objectness) probabilities, for drawing: what inference returns
    under ``"visuals"`` with ``return_visuals``.

    Attributes:
        before, after: (A,) sigmoid of the objectness before and after the model's
            :meth:`YOLOX.inference_objectness` (equal for plain YOLOX; Foreground Probing
            refines K of them).
        level_sizes: [(H_l, W_l)]; strides: [s_l]; image_size: (h, w) of the network input.
    """
    before: Tensor
    after: Tensor
    level_sizes: List[Tuple[int, int]]
    strides: List[int]
    image_size: Tuple[int, int]

    def level_maps(self, which: str) -> List[Tensor]:
        """Per level (H_l, W_l) maps (``which`` = "before" or "after")."""
        if which not in ("before", "after"):
            raise ValueError(f"which must be 'before' or 'after', got {which!r}")
        flat = self.before if which == "before" else self.after
        out, start = [], 0
        for h, w in self.level_sizes:
            out.append(flat[start:start + h * w].view(h, w))
            start += h * w
        return out


@META_ARCH_REGISTRY.register()
class YOLOX(DenseDetector):
    """YOLOX detector (see the module docstring).

    Args:
        backbone: a Backbone (YOLOPAFPN) returning the head's levels.
        head: a :class:`YOLOXHead` (returns a :class:`YOLOXHeadOutput`).
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
        return_visuals: inference also returns, per image, ``"visuals"``: a
            :class:`ForegroundMaps` (the objectness before and after
            :meth:`inference_objectness`, for drawing; ``tools/demo.py --show-foreground``).
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
                 pad_value: float = 114.0, return_visuals: bool = False, clip_test_boxes: bool = True):
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
        self.return_visuals = return_visuals
        shapes = self.backbone.output_shape()
        self.head_strides = [shapes[f].stride for f in self.head_in_features]
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

    # ------------------------------------------------------------------ hooks
    def class_targets(self, step: YOLOXStep, fg: Tensor, gt_boxes: Tensor) -> Tensor:
        """The soft target t of each positive's class channel (plain YOLOX: SimOTA's matched IoU).

        Args:
            step: the training step (``assignments`` set).
            fg: (N, A) bool, the positives; F = ``fg.sum()``, in the order of ``fg.nonzero()``.
            gt_boxes: (F, 4) XYXY ground-truth box matched to each positive (input pixels).
        Returns:
            (F,) targets in [0, 1], in the dtype of the class logits.
        """
        return torch.cat([a.matched_iou for a in step.assignments]).to(step.preds.cls_logits.dtype)

    def positive_weights(self, step: YOLOXStep, fg: Tensor, target: Tensor, labels: Tensor
                         ) -> Optional[Tuple[Tensor, Tensor]]:
        """Per-positive loss weights (plain YOLOX: None, every positive weighs 1).

        Args:
            step: the training step; fg: (N, A) bool positives (F of them);
            target: (F,) the class targets of :meth:`class_targets`;
            labels: (F,) int64 matched ground-truth classes.
        Returns:
            None, or (r_cls, r_reg), each (F,): r_cls multiplies a positive's classification BCE
            (summed over its C channels), r_reg its IoU and L1 losses.
        """
        return None

    def extra_losses(self, step: YOLOXStep) -> Dict[str, Tensor]:
        """Loss terms added to YOLOX's four (plain YOLOX: none)."""
        return {}

    def inference_objectness(self, step: YOLOXStep) -> Tensor:
        """(N, A) objectness logits that inference scores with (plain YOLOX: the head's)."""
        return step.preds.obj_logits

    # ----------------------------------------------------------------- losses
    def losses(self, step: YOLOXStep) -> Dict[str, Tensor]:
        """YOLOX's weighted loss terms (module docstring) of a training ``step`` (``gt_instances``
        and ``assignments`` set), with the targets and weights of :meth:`class_targets` and
        :meth:`positive_weights`."""
        preds, gt_instances, assignments = step.preds, step.gt_instances, step.assignments
        C = self.num_classes
        dtype = preds.cls_logits.dtype
        fg = torch.stack([a.fg_mask for a in assignments])  # (N, A)
        onehot, labels, box_t, l1_t = [], [], [], []
        for a, gt in zip(assignments, gt_instances):
            boxes = gt.gt_boxes.tensor[a.matched_gt]
            classes = gt.gt_classes[a.matched_gt].long()
            onehot.append(F.one_hot(classes, C).to(dtype))
            labels.append(classes)
            box_t.append(boxes)
            if self.use_l1:
                l1_t.append(self.l1_targets(boxes, preds.grids[a.fg_mask], preds.strides[a.fg_mask]))
        box_t = torch.cat(box_t).to(preds.boxes.dtype)
        target = self.class_targets(step, fg, box_t)
        cls_t = torch.cat(onehot) * target[:, None]
        weights = self.positive_weights(step, fg, target, torch.cat(labels))
        r_cls, r_reg = weights if weights is not None else (None, None)
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

    # ---------------------------------------------------------------- forward
    def _step(self, images: ImageList, predictions: YOLOXHeadOutput) -> YOLOXStep:
        sizes = torch.tensor(images.image_sizes, dtype=torch.int64, device=images.tensor.device).view(-1, 2)
        return YOLOXStep(self.decode(predictions.cls_logits, predictions.reg, predictions.obj_logits),
                         head=predictions, image_sizes=sizes)

    def forward_training(self, images: ImageList, features: List[Tensor], predictions: YOLOXHeadOutput,
                         gt_instances: List[Instances]) -> Dict[str, Tensor]:
        """DenseDetector's training step: decode, SimOTA (:meth:`label`), :meth:`losses`, then
        :meth:`extra_losses`.

        Args:
            images: the padded, normalised batch; features: per level (N, C_l, H_l, W_l);
            predictions: the head's :class:`YOLOXHeadOutput`; gt_instances: per image.
        """
        step = self._step(images, predictions)
        step.gt_instances = gt_instances
        step.assignments = self.label(step.preds, gt_instances)
        losses = self.losses(step)
        losses.update(self.extra_losses(step))
        return losses

    def forward_inference(self, images: ImageList, features: List[Tensor], predictions: YOLOXHeadOutput
                          ) -> List[Instances]:
        """DenseDetector's inference step: per image the detections in network-input pixels (not
        mapped back to the original image), scored with :meth:`inference_objectness`."""
        return self._infer(images, predictions)[0]

    def _infer(self, images: ImageList, predictions: YOLOXHeadOutput
               ) -> Tuple[List[Instances], YOLOXStep, Tensor]:
        step = self._step(images, predictions)
        obj_logits = self.inference_objectness(step)
        return self.inference(step.preds, obj_logits, images.image_sizes), step, obj_logits

    def forward(self, batched_inputs: List[Dict[str, Tensor]]):
        """Detectron2's contract: losses in training (``DenseDetector.forward``), per image
        ``{"instances": Instances}`` in inference, mapped back to each input's "height"/"width"
        (and ``"visuals"``, a :class:`ForegroundMaps`, with ``return_visuals``).

        Inference does not use ``DenseDetector.forward``: its inline ``detector_postprocess``
        always clips and rescales per axis, while the official YOLOX evaluator divides by the
        resize ratio without clipping (:meth:`map_to_original`; the COCO reference check
        ``tools/check_yolox_reference.py`` depends on it)."""
        if self.training:
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        results, step, obj_logits = self._infer(images, self.head(features))
        out = [{"instances": self.map_to_original(r, x)} for r, x in zip(results, batched_inputs)]
        if self.return_visuals:
            before, after = step.preds.obj_logits.sigmoid().detach(), obj_logits.sigmoid().detach()
            for i, o in enumerate(out):
                o["visuals"] = ForegroundMaps(before[i], after[i], step.preds.level_sizes, self.head_strides,
                                              tuple(images.image_sizes[i]))
        return out

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
