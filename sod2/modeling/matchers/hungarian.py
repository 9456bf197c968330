"""One-to-one (Hungarian) matching of set predictions to ground truths, as RT-DETR / DETR.

Cost of query q for ground truth g (lyuwenyu/RT-DETR v1 ``HungarianMatcher``, focal mode):

    C = cost_bbox * |b_q - b_g|_1 + cost_class * C_cls + cost_giou * (-GIoU(b_q, b_g))

with ``p = sigmoid(logit_q[label_g])`` and the focal class cost

    C_cls = alpha (1 - p)^gamma (-log(p + 1e-8)) - (1 - alpha) p^gamma (-log(1 - p + 1e-8)),

L1 on normalised cxcywh, GIoU on xyxy. Solved per image by
``scipy.optimize.linear_sum_assignment`` on the CPU: ``min(Q, N)`` pairs.

Non-finite predictions (a diverging model): the cost entries they give (NaN, +-inf), which
scipy refuses, are replaced by a finite value below every finite entry of the image's matrix
(:func:`sod2.modeling.checks.finite_cost`): the matching is deterministic and matches the
broken queries first, so that their non-finite boxes enter the losses (computed on the raw
predictions) and Detectron2's trainer stops with the loss names. A finite matrix is matched
exactly as before.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou

from ..checks import finite_cost

__all__ = ["HungarianMatcher"]


class HungarianMatcher(nn.Module):
    """Hungarian matcher with RT-DETR's focal classification cost (see the module docstring).

    Args:
        cost_class: weight of the focal class cost (2).
        cost_bbox: weight of the L1 box cost (5).
        cost_giou: weight of the -GIoU cost (2).
        alpha, gamma: focal parameters of the class cost (0.25, 2).
    """

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 alpha: float = 0.25, gamma: float = 2.0):
        super().__init__()
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("all matching costs are 0")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou
        self.alpha = alpha
        self.gamma = gamma

    @torch.no_grad()
    def cost_matrix(self, logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor) -> Tensor:
        """Matching cost of one image.

        Args:
            logits: (Q, C) class logits; boxes: (Q, 4) normalised cxcywh;
            gt_labels: (N,) int64 in [0, C); gt_boxes: (N, 4) normalised cxcywh.

        Returns:
            (Q, N) float32 cost, on the inputs' device.
        """
        # float32 whatever the autocast/precision of the heads: the 1e-8 inside the logs
        # vanishes in float16
        prob = logits.float().sigmoid()[:, gt_labels]  # (Q, N)
        boxes, gt_boxes = boxes.float(), gt_boxes.to(boxes.device).float()
        pos = self.alpha * (1 - prob) ** self.gamma * -torch.log(prob + 1e-8)
        neg = (1 - self.alpha) * prob ** self.gamma * -torch.log(1 - prob + 1e-8)
        cost_class = pos - neg
        cost_bbox = torch.cdist(boxes, gt_boxes, p=1)
        cost_giou = -generalized_box_iou(box_convert(boxes, "cxcywh", "xyxy"),
                                         box_convert(gt_boxes, "cxcywh", "xyxy"))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(self, logits: Tensor, boxes: Tensor, targets: List[Dict[str, Tensor]]
                ) -> List[Tuple[Tensor, Tensor]]:
        """
        Args:
            logits: (B, Q, C) class logits.
            boxes: (B, Q, 4) predicted normalised cxcywh boxes.
            targets: per image ``labels`` (N_i,) int64 and ``boxes`` (N_i, 4) normalised cxcywh.

        Returns:
            per image ``(query_index, gt_index)``: two CPU int64 tensors of length
            ``min(Q, N_i)``, query indices ascending (empty for an image without ground truth).
        """
        B, Q = logits.shape[:2]
        sizes = [len(t["boxes"]) for t in targets]
        costs = [self.cost_matrix(logits[i], boxes[i], targets[i]["labels"], targets[i]["boxes"]).flatten()
                 for i in range(B) if sizes[i] > 0]
        # a single device-to-host copy for the whole batch
        flat = torch.cat(costs).cpu() if costs else torch.zeros(0)
        chunks = iter(flat.split([Q * n for n in sizes if n > 0]))
        indices = []
        for n in sizes:
            if n == 0:
                indices.append((torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)))
                continue
            rows, cols = linear_sum_assignment(finite_cost(next(chunks).view(Q, n)).numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices
