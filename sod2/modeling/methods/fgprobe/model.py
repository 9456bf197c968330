"""``FGProbeYOLOX``: Foreground Probing on sod2's YOLOX, by overriding two of YOLOX's typed hooks.

* :meth:`FGProbeYOLOX.extra_losses` adds L_ref (``loss_ref``) and logs the gate
  (``fgprobe/lambda``);
* :meth:`FGProbeYOLOX.inference_objectness` returns the objectness with the K selected
  locations refined (:meth:`ForegroundProbe.apply`).

Both run STSM + FRM (:meth:`FGProbeYOLOX.run_probe`) on the head's last branch features. With
``probe=None`` both hooks are YOLOX's: the model has YOLOX's parameters, buffers, state-dict
keys, losses and detections (``tests/methods/test_off_is_baseline_fgprobe.py``).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Boxes, Instances, pairwise_iou
from torch import Tensor

from ....errors import UserError
from ...assigners import SimOTAResult
from ...meta_arch.yolox import YOLOX, YOLOXPredictions, YOLOXStep
from ...training import put_scalars
from .probe import ForegroundProbe

__all__ = ["FGProbeYOLOX"]


@META_ARCH_REGISTRY.register()
class FGProbeYOLOX(YOLOX):
    """YOLOX with Foreground Probing (the module docstring).

    Args:
        probe: the :class:`ForegroundProbe` (STSM + FRM + L_ref) on the head's cls/reg branch
            features (``cls_dim``/``reg_dim`` = the head's ``feat_channels``); None: plain YOLOX
            (the off override ``model.probe=null``).
        **kwargs: :class:`YOLOX`'s arguments.
    """

    def __init__(self, *, probe: Optional[ForegroundProbe] = None, **kwargs):
        super().__init__(**kwargs)
        width = self.head.feat_channels
        if probe is not None and (probe.q_cls.in_features, probe.q_reg.in_features) != (width, width):
            raise UserError(f"model.probe: cls_dim/reg_dim ({probe.q_cls.in_features}, {probe.q_reg.in_features}) "
                              f"must equal model.head.feat_channels ({width})")
        self.probe = probe

    @staticmethod
    def valid_locations(preds: YOLOXPredictions, image_sizes: Tensor) -> Tensor:
        """(N, A) bool: the location's cell centre lies inside its image (not in the batch padding).

        Args:
            preds: the decoded predictions (their ``anchor_centers``, (A, 2) x, y).
            image_sizes: (N, 2) (h, w) of the unpadded inputs.
        """
        c = preds.anchor_centers
        hw = image_sizes.to(c.dtype)
        return (c[None, :, 0] < hw[:, 1:2]) & (c[None, :, 1] < hw[:, 0:1])

    def run_probe(self, step: YOLOXStep) -> Tuple[Tensor, Tensor, Tensor]:
        """STSM + FRM on this step: the K locations of highest objectness inside each image, their
        cls/reg branch features gathered from the per-level maps (with gradients).

        Returns:
            idx (N, K) selected locations, refined objectness logits (N, K), lambda (N,).
        """
        probe = self.probe
        idx = probe.select(step.preds.obj_logits, self.valid_locations(step.preds, step.image_sizes))
        refined, lam = probe.refine(probe.gather_levels(step.head.cls_feats, idx),
                                    probe.gather_levels(step.head.reg_feats, idx))
        return idx, refined, lam

    @torch.no_grad()
    def probe_targets(self, preds: YOLOXPredictions, gt_instances: List[Instances],
                      assignments: List[SimOTAResult]) -> Tensor:
        """(N, A) foreground label of every location for L_ref: a SimOTA positive
        (``probe.target="assignment"``) or IoU of its decoded box with its best ground truth
        >= ``probe.iou_thresh`` (``"iou"``)."""
        if self.probe.target == "assignment":
            return torch.stack([a.fg_mask for a in assignments])
        out = torch.zeros(preds.obj_logits.shape, dtype=torch.bool, device=preds.obj_logits.device)
        for i, gt in enumerate(gt_instances):
            if len(gt):
                iou = pairwise_iou(Boxes(preds.boxes[i]), gt.gt_boxes)  # (A, G)
                out[i] = iou.max(dim=1).values >= self.probe.iou_thresh
        return out

    def extra_losses(self, step: YOLOXStep) -> Dict[str, Tensor]:
        """``loss_ref`` (L_ref of the K refined tokens) and the ``fgprobe/lambda`` scalar."""
        if self.probe is None:
            return super().extra_losses(step)
        idx, refined, lam = self.run_probe(step)
        losses = self.probe.losses(refined, idx, self.probe_targets(step.preds, step.gt_instances, step.assignments))
        put_scalars(**{"fgprobe/lambda": lam.detach().mean().item()})
        return losses

    def inference_objectness(self, step: YOLOXStep) -> Tensor:
        """(N, A) objectness logits with the K selected tokens' refined logits (``probe.inference``:
        "replace" or "tokens_only")."""
        if self.probe is None:
            return super().inference_objectness(step)
        idx, refined, _ = self.run_probe(step)
        return self.probe.apply(step.preds.obj_logits, idx, refined)
