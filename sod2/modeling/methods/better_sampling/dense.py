"""``BetterSamplingYOLOX``: Better Sampling's dense parts (Huang et al. 2024: the scale-aligned
target ST and the task-decoupled sample reweighting SR; the paper also reports them on the dense
GFL and TOOD) on sod2's YOLOX, by overriding two of YOLOX's typed loss hooks. They change only
the training losses; inference is YOLOX's.

* ST, :meth:`BetterSamplingYOLOX.class_targets`: the soft target ``t`` of each positive's class
  channel is ``better_sampling.class_target(pred box, gt box)`` (both cxcywh, input pixels, the
  prediction detached) instead of SimOTA's matched IoU;
* SR, :meth:`BetterSamplingYOLOX.positive_weights`: per-positive weights ``r_cls``, ``r_reg``
  from the positive location's last cls- and reg-branch features (D = the head's width), its
  target ``t`` and its detached class probability ``s = sigmoid(cls)`` on the gt class.
  ``r_cls`` multiplies the positive's classification BCE (summed over its C channels: YOLOX's
  classification loss has only positive locations, each weight 1, so the weight of a sample
  becomes ``r_cls``: ``SampleReweighting.cls_weight`` "replace" and "scale" coincide here);
  ``r_reg`` multiplies its IoU loss and its L1 loss. ``loss_obj`` is unchanged. The
  generator's parameters enter ``loss_cls`` with a zero factor (DDP sees them used in every
  step, even with no positive) and the mean / spread of the weights go to the EventStorage
  (``better_sampling/r_cls_mean`` ...).

SPR (sample-point refinement) needs a deformable decoder's sampling points: a dense head has
none, so it is refused. The varifocal parameters of :class:`BetterSampling` are not used
(YOLOX's classification loss is a BCE). With ``better_sampling=None`` the hooks are YOLOX's:
the model is YOLOX (``tests/methods/test_off_is_baseline_bs_dense.py``).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from torch import Tensor
from torchvision.ops import box_convert

from ....errors import UserError
from ...meta_arch.yolox import YOLOX, YOLOXStep
from ...training import zero_dependency
from .better_sampling import BetterSampling
from .components import log_reweighting_stats

__all__ = ["BetterSamplingYOLOX", "gather_locations"]


def gather_locations(feats: List[Tensor], mask: Tensor) -> Tensor:
    """The features of the locations in ``mask``, in the order of ``mask.nonzero()`` (that of
    ``preds.cls_logits[mask]``), gathered straight from the per-level maps.

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


@META_ARCH_REGISTRY.register()
class BetterSamplingYOLOX(YOLOX):
    """YOLOX with Better Sampling's ST and SR in its losses (the module docstring).

    Args:
        better_sampling: a :class:`BetterSampling` with ``class_target`` (ST) and/or
            ``reweighting`` (SR, ``hidden_dim`` = the head's ``feat_channels``), no
            ``point_refinement``; None: plain YOLOX (the off override ``model.better_sampling=null``).
        **kwargs: :class:`YOLOX`'s arguments.
    """

    def __init__(self, *, better_sampling: Optional[BetterSampling] = None, **kwargs):
        super().__init__(**kwargs)
        if better_sampling is not None:
            if better_sampling.point_refinement is not None:
                raise UserError("model.better_sampling.point_refinement: sample-point refinement needs a deformable "
                                "decoder's sampling points; a dense YOLOX head has none (set it to None)")
            sr, width = better_sampling.reweighting, self.head.feat_channels
            if sr is not None and sr.hidden_dim != width:
                raise UserError(f"model.better_sampling.reweighting.hidden_dim ({sr.hidden_dim}) must equal "
                                f"model.head.feat_channels ({width})")
        self.better_sampling = better_sampling

    def class_targets(self, step: YOLOXStep, fg: Tensor, gt_boxes: Tensor) -> Tensor:
        """ST: ``class_target(pred, gt)`` on cxcywh boxes in input pixels, the prediction
        detached; (F,). Without ST: SimOTA's matched IoU."""
        bs = self.better_sampling
        if bs is None or bs.class_target is None:
            return super().class_targets(step, fg, gt_boxes)
        pred = box_convert(step.preds.boxes[fg].detach().float(), "xyxy", "cxcywh")
        return bs.class_target(pred, box_convert(gt_boxes.float(), "xyxy", "cxcywh")).to(step.preds.cls_logits.dtype)

    def positive_weights(self, step: YOLOXStep, fg: Tensor, target: Tensor, labels: Tensor
                         ) -> Optional[Tuple[Tensor, Tensor]]:
        """SR: (r_cls, r_reg), each (F,), from the positives' last cls/reg branch features, their
        targets and detached class probabilities (logged to the EventStorage). Without SR: None."""
        bs = self.better_sampling
        if bs is None or bs.reweighting is None:
            return super().positive_weights(step, fg, target, labels)
        if step.head is None:
            raise ValueError("BetterSamplingYOLOX: sample reweighting needs the head's features (YOLOXStep.head)")
        score = torch.sigmoid(step.preds.cls_logits[fg].detach().gather(1, labels[:, None])[:, 0])
        r_cls, r_reg = bs.reweighting(gather_locations(step.head.cls_feats, fg),
                                      gather_locations(step.head.reg_feats, fg), target, score)
        log_reweighting_stats(r_cls, r_reg)
        return r_cls, r_reg

    def losses(self, step: YOLOXStep) -> Dict[str, Tensor]:
        """YOLOX's losses with the overridden targets and weights; with SR, every generator
        parameter also enters ``loss_cls`` with a zero factor, so that it takes part in the graph
        even when it gets no gradient (no positive in the batch) and DDP needs no
        ``find_unused_parameters``."""
        out = super().losses(step)
        if self.better_sampling is not None and self.better_sampling.reweighting is not None:
            out["loss_cls"] = out["loss_cls"] + zero_dependency(self.better_sampling.reweighting)
        return out
