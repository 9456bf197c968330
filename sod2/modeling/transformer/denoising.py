"""RT-DETR's contrastive denoising (DN) queries (training only).

The ground truths of each image are padded to the batch's largest count ``m`` and repeated in
``G = max(1, num_denoising // m)`` groups of ``2 m`` queries: ``m`` positives then ``m``
negatives. Each query starts from its ground truth with

* label noise: with probability ``label_noise_ratio * 0.5`` a real (non-padded) entry gets a
  label drawn uniformly from [0, C) (possibly its own);
* box noise, in xyxy: every coordinate moves by ``sign * r * (w / 2 or h / 2) *
  box_noise_scale`` with ``sign`` = +-1 (probability 1/2 each) and ``r ~ U[0, 1)`` for
  positives, ``U[1, 2)`` for negatives; then clipped to [0, 1], back to cxcywh and
  inverse-sigmoid (eps 1e-5).

Padded entries get label C (the embedding's zero ``padding_idx`` row) and the box
``inverse_sigmoid(0)`` in every coordinate. The positives are trained to reconstruct their
ground truth (fixed matching), the negatives to predict "no object".

The random draws are the reference's (lyuwenyu/RT-DETR v1,
``get_contrastive_denoising_training_group``) in the same order, shapes and dtypes: (1) uniform
(B, Nd) for the label-noise mask, (2) integers (B, Nd) in [0, C) for the new labels, (3) integers
(B, Nd, 4) in {0, 1} for the signs, (4) uniform (B, Nd, 4) for r. With the same RNG state the
queries are therefore identical to the reference's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...layers.mlp import inverse_sigmoid
from ..checks import check_size

__all__ = ["ContrastiveDenoising", "DenoisingQueries", "denoising_attn_mask"]


@dataclass
class DenoisingQueries:
    """Denoising queries of a batch, prepended to the Q matching queries by the decoder.

    Attributes:
        embed: (B, Nd, C) content queries (class embeddings of the noised labels; not
            detached: they train ``class_embed``).
        boxes_unact: (B, Nd, 4) inverse-sigmoid of the noised normalised cxcywh boxes.
        attn_mask: (Nd + Q, Nd + Q) bool self-attention mask, True = blocked (see
            :func:`denoising_attn_mask`).
        positive_index: per image, (n_i * G,) int64 indices in [0, Nd) of its positive dn
            queries, group by group (group g: ``g * 2m + j`` for j < n_i).
        gt_index: per image, (n_i * G,) int64 ground-truth index of each positive (``arange(n_i)``
            tiled G times), so ``(positive_index[i], gt_index[i])`` is the fixed matching.
        num_groups: G.
        num_denoising: Nd = 2 m G.
    """

    embed: Tensor
    boxes_unact: Tensor
    attn_mask: Tensor
    positive_index: List[Tensor]
    gt_index: List[Tensor]
    num_groups: int
    num_denoising: int


def denoising_attn_mask(num_denoising: int, num_groups: int, num_queries: int,
                        device: Optional[torch.device] = None) -> Tensor:
    """Self-attention mask of ``num_denoising`` dn queries in ``num_groups`` equal consecutive
    groups followed by ``num_queries`` matching queries; True = the row may NOT attend to the
    column:

    * matching queries see only matching queries (no ground-truth leak into matching);
    * a dn query sees its own group and all matching queries, not the other groups.

    Returns:
        (Nd + Q, Nd + Q) bool.
    """
    n = num_denoising + num_queries
    mask = torch.zeros(n, n, dtype=torch.bool, device=device)
    group = torch.arange(num_denoising, device=device) // (num_denoising // num_groups)
    mask[:num_denoising, :num_denoising] = group[:, None] != group[None, :]
    mask[num_denoising:, :num_denoising] = True
    return mask


class ContrastiveDenoising(nn.Module):
    """Builds the denoising queries from the ground truths (see the module docstring).

    Args:
        num_classes: C; ``class_embed`` = Embedding(C + 1, hidden_dim, padding_idx=C)
            (N(0, 1) init, zero padding row: PyTorch's default, as the reference).
        hidden_dim: embedding size (the decoder's hidden size).
        num_denoising: target number of dn queries (a budget: G = max(1, num_denoising // m)).
        label_noise_ratio: twice the label-flip probability (reference convention).
        box_noise_scale: box noise amplitude in half box sizes.
    """

    def __init__(self, num_classes: int, hidden_dim: int = 256, num_denoising: int = 100,
                 label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0):
        super().__init__()
        check_size("ContrastiveDenoising", "num_classes", num_classes)
        check_size("ContrastiveDenoising", "hidden_dim", hidden_dim)
        check_size("ContrastiveDenoising", "num_denoising", num_denoising, minimum=0)
        self.num_classes = num_classes
        self.hidden_dim = hidden_dim
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)

    def forward(self, targets: List[Dict[str, Tensor]], num_queries: int) -> Optional[DenoisingQueries]:
        """
        Args:
            targets: per image ``labels`` (n_i,) int64 in [0, C) and ``boxes`` (n_i, 4)
                normalised cxcywh.
            num_queries: Q, the number of matching queries the mask must cover.

        Returns:
            :class:`DenoisingQueries`, or None when ``num_denoising <= 0`` or no image has a
            ground truth (the caller then runs without denoising, as the reference).
        """
        if self.num_denoising <= 0 or len(targets) == 0:
            return None
        num_gts = [len(t["labels"]) for t in targets]
        m = max(num_gts)
        if m == 0:
            return None
        device = targets[0]["labels"].device
        B, C = len(targets), self.num_classes
        G = max(1, self.num_denoising // m)
        Nd = 2 * m * G

        labels = torch.full((B, m), C, dtype=torch.int32, device=device)
        boxes = torch.zeros(B, m, 4, dtype=torch.float32, device=device)
        real = torch.zeros(B, m, dtype=torch.bool, device=device)
        for i, (t, n) in enumerate(zip(targets, num_gts)):
            if n > 0:
                labels[i, :n] = t["labels"].to(device=device, dtype=torch.int32)
                boxes[i, :n] = t["boxes"].to(device=device, dtype=torch.float32)
                real[i, :n] = True
        # the groups: [m positives, m negatives] x G along the query dimension
        labels = labels.repeat(1, 2 * G)
        boxes = boxes.repeat(1, 2 * G, 1)
        real = real.repeat(1, 2 * G)
        negative = (torch.arange(Nd, device=device) % (2 * m)) >= m  # (Nd,)

        positive_index, gt_index = [], []
        for n in num_gts:
            base = torch.arange(n, dtype=torch.int64, device=device)
            starts = torch.arange(G, dtype=torch.int64, device=device) * (2 * m)
            positive_index.append((starts[:, None] + base[None, :]).reshape(-1))
            gt_index.append(base.repeat(G))

        if self.label_noise_ratio > 0:
            flip = torch.rand_like(labels, dtype=torch.float32) < self.label_noise_ratio * 0.5
            new_labels = torch.randint_like(flip, 0, C, dtype=labels.dtype)
            labels = torch.where(flip & real, new_labels, labels)

        if self.box_noise_scale > 0:
            xyxy = box_convert(boxes, "cxcywh", "xyxy")
            half_size = (boxes[..., 2:] * 0.5).repeat(1, 1, 2) * self.box_noise_scale  # (w/2, h/2) x 2
            sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
            r = torch.rand_like(boxes)
            r = torch.where(negative[None, :, None], r + 1.0, r)  # [1, 2) for negatives
            xyxy = (xyxy + (r * sign) * half_size).clamp(min=0.0, max=1.0)
            boxes = box_convert(xyxy, "xyxy", "cxcywh")
        boxes_unact = inverse_sigmoid(boxes)

        return DenoisingQueries(
            embed=self.class_embed(labels.long()),
            boxes_unact=boxes_unact,
            attn_mask=denoising_attn_mask(Nd, G, num_queries, device=device),
            positive_index=positive_index,
            gt_index=gt_index,
            num_groups=G,
            num_denoising=Nd,
        )
