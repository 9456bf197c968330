"""
Better Sampling (Huang et al., "Better Sampling, towards Better End-to-end Small Object
Detection", 2024): three changes of the training objective, each a separate component that
the set criterion (or a dense head) takes as an optional argument; inference is unchanged.

* :class:`ScaleAlignedTarget` (ST), the soft target of the classification loss on the
  positive's class in place of VFL's ``q = IoU`` (the baseline's
  :class:`~sod2.modeling.criterion.IoUTarget`): ``c = u^beta * v^(1-beta)``, ``u`` the
  IoU, ``v = exp(-theta (sqrt(rho) - 1)^2)``, ``rho`` the area ratio prediction / ground
  truth;
* :class:`SampleReweighting` (SR): a small weight generator on each positive's
  classification and regression features giving per-positive loss weights ``r_cls``,
  ``r_reg``;
* :class:`SamplePointRefinement` (SPR): offset and attention losses on the deformable
  cross-attention sampling points of positive queries.

Every part works on flat per-positive tensors (P positives in any order), so a dense detector
can use it with its own positives (see each class).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from ....layers.losses import aligned_iou_giou
from ...training import current_storage, put_scalars

__all__ = ["ScaleAlignedTarget", "SampleReweighting",
           "SamplePointRefinement", "log_reweighting_stats"]


class ScaleAlignedTarget:
    """ST: the scale-aligned classification target, detached (as VFL detaches q)::

        u = IoU(B, B^),  rho = area(B) / area(B^),  r = sqrt(rho),
        v = exp(-theta * (r - 1)^2),  c = u^beta * v^(1 - beta)

    for a prediction B matched to the ground truth B^. The target vector is ``c`` on the
    ground truth's class channel, 0 elsewhere (the criterion builds it).

    Args:
        beta: balance of IoU and scale agreement (0.73, the paper's Table 4 best).
        theta: sharpness of the scale term (6, Table 5 best).

    Call with ``(pred_boxes (P, 4), gt_boxes (P, 4))`` in (cx, cy, w, h) (any unit, the same
    for both: a dense detector passes its decoded boxes converted to cxcywh); returns (P,).
    """

    def __init__(self, beta: float = 0.73, theta: float = 6.0):
        self.beta = float(beta)
        self.theta = float(theta)

    @torch.no_grad()
    def __call__(self, pred_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
        pred_boxes = pred_boxes.detach()
        u, _ = aligned_iou_giou(box_convert(pred_boxes, "cxcywh", "xyxy"), box_convert(gt_boxes, "cxcywh", "xyxy"))
        area_pred = pred_boxes[:, 2].clamp(min=0) * pred_boxes[:, 3].clamp(min=0)
        area_gt = gt_boxes[:, 2].clamp(min=0) * gt_boxes[:, 3].clamp(min=0)
        rho = area_pred / area_gt.clamp(min=torch.finfo(area_gt.dtype).tiny)
        v = torch.exp(-self.theta * (rho.sqrt() - 1.0) ** 2)
        return u.pow(self.beta) * v.pow(1.0 - self.beta)

    def __repr__(self) -> str:
        return f"ScaleAlignedTarget(beta={self.beta}, theta={self.theta})"


class SampleReweighting(nn.Module):
    """SR: the task-decoupled weight generator. For P positives with classification and
    regression features ``H_cls``, ``H_reg`` (P, C)::

        A     = sigmoid(B1(conv1(cat(H_reg, H_cls))))          conv1: 2C -> C
        w_cls = sigmoid(B_cls(conv3(H_cls * conv2(A))))          conv2: C -> C, conv3: C -> 1
        w_reg = sigmoid(B_reg(conv3(H_reg * conv2(A))))
        r     = w ** (1 - |t - s|)                                (t, s detached)

    with ``t`` the class target and ``s`` the predicted confidence of the positive (on its
    ground-truth class). The paper's 1x1 convolutions over queries are Linear layers here;
    ``B`` is "ReLU and batch normalisation" (the order is ``order``), batch statistics over
    the P positives of the call.

    [ours] choices (the paper is silent):

    * conv2 and conv3 are shared by the two tasks (the paper numbers three convolutions); the
      two final normalisations are separate (``norm_cls``, ``norm_reg``), as the classification
      and regression features have different statistics;
    * ``detach_inputs`` (default True): the generator reads detached features, so the only
      thing the weighted losses can push through ``r`` is the generator itself; without it,
      the detector's features would also be trained to lower their own loss weights;
    * P == 1 in training: BatchNorm of one sample is ``x - mean = 0``, so the normalisation
      outputs its bias beta (running statistics are not updated); P == 0 returns empty
      weights;
    * ``detach_normalize=False`` (the paper literally, default): r keeps its gradient, so
      the generator learns by lowering ``sum r * loss``; with BN -> ReLU -> sigmoid, w lies in
      [0.5, 1) and r tends to 1 for hard positives (large |t - s|) and to w for easy ones.
      ``detach_normalize=True``: r detached and divided by its mean over the P positives
      (mean 1, the loss scale unchanged); the generator then gets no gradient at all (it
      stays at its initialisation: a fixed random weighting), which the criterion keeps
      DDP-safe with a zero-valued term.

    Args:
        hidden_dim: C, the feature width (256 in RT-DETR; YOLOX's head width for a dense head).
        detach_normalize: see above.
        order: "bn_relu" (BN then ReLU, default) or "relu_bn".
        cls_weight: how ``r_cls`` enters a varifocal-type loss (read by the set criterion):
            "replace": the positive's weight becomes ``r_cls`` (the paper's
            ``L_cls = sum_pos r_cls BCE(s, t) + alpha sum_neg p^gamma BCE(s, 0)``: r_cls takes
            the place of VFL's q-weight), default; "scale": ``r_cls * t`` (VFL's weight kept).
        detach_inputs: see above.
        eps, momentum: of the BatchNorm layers (PyTorch defaults).

    Use by a dense detector: gather, for its P positive locations, the classification-branch
    feature (P, C) and the regression-branch feature (P, C), the class target t (P,) and the
    detached predicted probability of the ground-truth class s (P,); multiply each positive's
    classification loss by ``r_cls`` and its box losses by ``r_reg``.
    """

    def __init__(self, hidden_dim: int = 256, detach_normalize: bool = False, order: str = "bn_relu",
                 cls_weight: str = "replace", detach_inputs: bool = True, eps: float = 1e-5,
                 momentum: float = 0.1):
        super().__init__()
        if order not in ("bn_relu", "relu_bn"):
            raise ValueError(f"SampleReweighting: order must be 'bn_relu' or 'relu_bn', got {order!r}")
        if cls_weight not in ("replace", "scale"):
            raise ValueError(f"SampleReweighting: cls_weight must be 'replace' or 'scale', got {cls_weight!r}")
        self.hidden_dim = hidden_dim
        self.detach_normalize = detach_normalize
        self.order = order
        self.cls_weight = cls_weight
        self.detach_inputs = detach_inputs
        self.conv1 = nn.Linear(2 * hidden_dim, hidden_dim)
        self.norm1 = nn.BatchNorm1d(hidden_dim, eps=eps, momentum=momentum)
        self.conv2 = nn.Linear(hidden_dim, hidden_dim)
        self.conv3 = nn.Linear(hidden_dim, 1)
        self.norm_cls = nn.BatchNorm1d(1, eps=eps, momentum=momentum)
        self.norm_reg = nn.BatchNorm1d(1, eps=eps, momentum=momentum)

    def _norm(self, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            # one sample is its own batch mean: BN gives beta; keep the graph to x and gamma
            return x * 0.0 + bn.weight * 0.0 + bn.bias
        return bn(x)

    def _block(self, bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
        if self.order == "bn_relu":
            return F.relu(self._norm(bn, x))
        return self._norm(bn, F.relu(x))

    def weights(self, h_cls: Tensor, h_reg: Tensor) -> Tuple[Tensor, Tensor]:
        """The generator's raw weights ``w_cls``, ``w_reg`` (P,) before the discount."""
        if self.detach_inputs:
            h_cls, h_reg = h_cls.detach(), h_reg.detach()
        a = torch.sigmoid(self._block(self.norm1, self.conv1(torch.cat([h_reg, h_cls], dim=1))))
        gate = self.conv2(a)
        w_cls = torch.sigmoid(self._block(self.norm_cls, self.conv3(h_cls * gate)))
        w_reg = torch.sigmoid(self._block(self.norm_reg, self.conv3(h_reg * gate)))
        return w_cls[:, 0], w_reg[:, 0]

    def forward(self, h_cls: Tensor, h_reg: Tensor, target: Tensor, score: Tensor) -> Tuple[Tensor, Tensor]:
        """
        Args:
            h_cls: (P, C) classification features of the positives (RT-DETR: the decoder
                layer output feeding the score head).
            h_reg: (P, C) regression features (RT-DETR: the box MLP's last hidden layer).
            target: (P,) class target t of each positive (IoU or ST's c).
            score: (P,) predicted confidence s of each positive on its ground-truth class.
        Returns:
            r_cls (P,), r_reg (P,).
        """
        if h_cls.shape[0] == 0:
            empty = h_cls.new_zeros(0)
            return empty, empty
        w_cls, w_reg = self.weights(h_cls, h_reg)
        exponent = 1.0 - (target.detach() - score.detach()).abs().to(w_cls.dtype)
        r_cls, r_reg = w_cls.pow(exponent), w_reg.pow(exponent)
        if self.detach_normalize:
            r_cls, r_reg = r_cls.detach(), r_reg.detach()
            r_cls, r_reg = r_cls / r_cls.mean(), r_reg / r_reg.mean()
        return r_cls, r_reg

    def extra_repr(self) -> str:
        return (f"hidden_dim={self.hidden_dim}, detach_normalize={self.detach_normalize}, order={self.order!r}, "
                f"cls_weight={self.cls_weight!r}, detach_inputs={self.detach_inputs}")


def log_reweighting_stats(r_cls: Tensor, r_reg: Tensor, prefix: str = "better_sampling") -> None:
    """Put the mean and standard deviation of the SR weights (over all positives given) into
    Detectron2's current EventStorage, if one is active (nothing otherwise, nothing for P = 0):
    ``<prefix>/r_cls_mean``, ``r_cls_std``, ``r_reg_mean``, ``r_reg_std``."""
    if r_cls.numel() == 0 or current_storage() is None:  # nothing to log / outside a trainer
        return
    r_cls, r_reg = r_cls.detach().float(), r_reg.detach().float()
    std = (lambda r: r.std().item() if r.numel() > 1 else 0.0)
    put_scalars(**{f"{prefix}/r_cls_mean": r_cls.mean().item(), f"{prefix}/r_cls_std": std(r_cls),
                   f"{prefix}/r_reg_mean": r_reg.mean().item(), f"{prefix}/r_reg_std": std(r_reg)})


class SamplePointRefinement(nn.Module):
    """SPR: losses on the deformable cross-attention sampling points of positive queries.

    RT-DETR's sampling location is ``ref_xy + offset / n_points * ref_wh * 0.5`` (reference
    box = the previous layer's detached prediction), so in units of the reference box's size
    a point lies at ``d = offset / (2 n_points)`` from its centre: it is inside the box iff
    ``|offset| / n_points <= 1`` on both axes, and inside the box enlarged by ``eta`` iff
    ``|d| <= eta / 2``. For each positive query, head m, level l and point k (the spec's
    [ours] reading of the paper's printed formula):

    * ``O_ml`` / ``I_ml``: the points of head m on level l outside / inside the reference box;
    * ``L_offset = sum over k in O_ml of (sum_{x,y} max(0, |d| - eta / 2))^2``: zero inside the
      eta-enlarged box, growing with the (box-relative L1) distance beyond it;
    * ``L_atten = sum over k in O_ml of max(A_k - max_{k' in I_ml} A_k', 0)``, the maximum
      taken within the same head and level. [ours] If no point of (m, l) is inside, the
      maximum over the empty set is 0 (attention weights are >= 0), so every outside point
      is pushed down by its own weight: with no point on the object, that level's attention
      of the head carries no object information.

    Both are sums over the given positives; the caller normalises.

    Args:
        etas: eta per decoder layer (Table 7 best for 6 layers: 1.5, 1.3, 1.2, 1.1, 1.05, 1.0);
            a decoder with fewer layers needs its own tuple (the layer index is checked).
        num_points: points per head and level; None: read from the tensors (checked if given).
    """

    def __init__(self, etas: Sequence[float] = (1.5, 1.3, 1.2, 1.1, 1.05, 1.0), num_points: Optional[int] = 4):
        super().__init__()
        self.etas = tuple(float(e) for e in etas)
        self.num_points = num_points

    def forward(self, offsets: Tensor, attention: Tensor, layer_index: int) -> Tuple[Tensor, Tensor]:
        """
        Args:
            offsets: (P, M, L, Pt, 2) raw sampling offsets of the positive queries (the Linear
                output, before ``/ Pt * wh * 0.5``).
            attention: (P, M, L, Pt) attention weights (after the softmax).
            layer_index: the decoder layer, selects eta.
        Returns:
            loss_offset, loss_atten: scalar sums.
        """
        layer_index = int(layer_index)
        if not 0 <= layer_index < len(self.etas):
            raise ValueError(f"SamplePointRefinement: layer_index {layer_index} has no eta (etas={self.etas})")
        eta = self.etas[layer_index]
        n_points = offsets.shape[-2]
        if self.num_points is not None and n_points != self.num_points:
            raise ValueError(f"SamplePointRefinement: offsets have {n_points} points, expected {self.num_points}")
        dist = offsets.abs() / (2.0 * n_points)                  # box-relative |d|
        outside = (dist > 0.5).any(dim=-1)                          # (P, M, L, Pt)
        excess = (dist - eta / 2.0).clamp(min=0).sum(dim=-1)
        loss_offset = (excess.pow(2) * outside).sum()
        best_inside = attention.masked_fill(outside, 0.0).amax(dim=-1, keepdim=True)
        loss_atten = ((attention - best_inside).clamp(min=0) * outside).sum()
        return loss_offset, loss_atten

    def extra_repr(self) -> str:
        return f"etas={self.etas}, num_points={self.num_points}"
