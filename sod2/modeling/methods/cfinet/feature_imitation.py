"""
CFINet's feature imitation (FI) branch and the ROI heads that host it
(projects/CFINet/README.md, "Feature imitation").

* :class:`Feat2Embed`: 7x7 RoI feature -> three 3x3 convs without padding (7->5->3->1,
  GroupNorm, no bias, no activation) -> MLP 256-512-512-128 -> L2 normalisation.
* :class:`ExemplarBank`: per class, a FIFO of RoI features (C x 7 x 7) of high-quality
  ground truths, kept in module buffers (saved by the checkpointer) and grown with the
  exemplars of ALL processes, so that every process holds the same bank.
* :class:`FeatureImitation`: instance quality, high-quality selection, positives (augmented
  views of a high-quality instance, else bank exemplars of its class), negatives, and the
  supervised contrastive loss.
* :class:`FeatureImitationROIHeads`: ``StandardROIHeads`` plus the branch, which adds
  nothing at inference (``imitation=None`` is plain Faster R-CNN).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils import comm
from torch import nn

from ....layers import supervised_contrastive_loss
from ....layers.losses import aligned_iou
from ...checks import check_size
from ...training import current_storage, put_scalars, zero_dependency

logger = logging.getLogger(__name__)

__all__ = ["Feat2Embed", "ExemplarBank", "FeatureImitation", "FeatureImitationROIHeads",
           "QualityEvidence", "ImitationBatch", "SampleTable", "ContrastiveRows",
           "augmented_boxes", "instance_quality", "imitation_mlp_lr_factor"]


def imitation_mlp_lr_factor(name: str, factor: float = 0.05) -> float:
    """Learning-rate factor of a parameter (``get_default_optimizer_params``'s
    ``lr_factor_func``): ``factor`` for Feat2Embed's MLP, 1 elsewhere. The official code
    trains the MLP at 0.05x; at the full rate its ReLUs die within ~100 iterations and every
    embedding collapses to the same direction (the contrastive loss then stays at log(S))."""
    return factor if ".imitation.embed.mlp." in "." + name else 1.0


class Feat2Embed(nn.Module):
    """RoI feature (N, C, S, S) -> embedding (N, D), in two steps: :meth:`compress` (the
    convs, S -> 1) and :meth:`project` (the MLP and L2 normalisation).

    ``mlp_init="official"`` draws the three linear layers from N(0, 0.01) and keeps a bias on
    the last one, as the official code; the embeddings then start ~1e-3 long, and a few
    hundred steps of the contrastive loss grow the last bias past them: every embedding
    collapses to the same direction and the loss stays at log(#samples) (measured on the
    synthetic data, even at the official 0.05x MLP learning rate). sod2's default
    (``mlp_init="default"``): PyTorch's default init and no bias on the last layer, whose
    output is L2-normalised anyway.
    """

    def __init__(self, in_channels: int = 256, roi_size: int = 7, hidden_dim: int = 512,
                 out_dim: int = 128, num_groups: int = 32, mlp_init: str = "default"):
        super().__init__()
        if mlp_init not in ("default", "official"):
            raise ValueError(f"mlp_init must be 'default' or 'official', got {mlp_init!r}")
        convs = []
        for _ in range(roi_size // 2):  # 7 -> 5 -> 3 -> 1
            convs += [nn.Conv2d(in_channels, in_channels, 3, bias=False),
                      nn.GroupNorm(num_groups, in_channels)]
        self.convs = nn.Sequential(*convs)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        official = mlp_init == "official"
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, hidden_dim), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_dim, out_dim, bias=official))
        if official:
            for m in self.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)

    def compress(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) -> (N, C)."""
        return self.convs(x).flatten(1)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        """(N, C) -> (N, D), unit length."""
        return F.normalize(self.mlp(v), dim=1)


class ExemplarBank(nn.Module):
    """Per-class FIFO of RoI features.

    Buffers (saved and restored by ``DetectionCheckpointer``): ``bank_feats`` (K, cap, C, S,
    S), ``bank_count`` (K,) filled slots, ``bank_next`` (K,) the slot written next (the
    oldest one once full).
    """

    def __init__(self, num_classes: int, capacity: int = 256, channels: int = 256,
                 roi_size: int = 7, dtype: torch.dtype = torch.float32):
        super().__init__()
        for name, value in (("num_classes", num_classes), ("capacity", capacity), ("channels", channels),
                            ("roi_size", roi_size)):
            check_size("ExemplarBank", name, value)
        self.capacity = capacity
        self.register_buffer("bank_feats", torch.zeros(num_classes, capacity, channels, roi_size,
                                                       roi_size, dtype=dtype))
        self.register_buffer("bank_count", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("bank_next", torch.zeros(num_classes, dtype=torch.int64))

    @property
    def num_classes(self) -> int:
        return self.bank_feats.shape[0]

    @torch.no_grad()
    def add(self, feats: torch.Tensor, labels: torch.Tensor) -> int:
        """Append exemplars in order; a full class overwrites its oldest entry. An exemplar
        with a non-finite value (a diverging model) is not stored, with a warning: it would
        make the contrastive loss of every later iteration of its class non-finite (its own
        iteration's loss, where it is an anchor, already is).

        Args:
            feats: (N, C, S, S); labels: (N,) class indices.
        Returns:
            the number stored.
        """
        finite = torch.isfinite(feats.flatten(1)).all(dim=1)
        if not bool(finite.all()):
            logger.warning("ExemplarBank: %d of %d new exemplars contain NaN/inf and are not stored",
                           int((~finite).sum()), len(feats))
            feats, labels = feats[finite], labels[finite.to(labels.device)]
        for f, c in zip(feats, labels.tolist()):
            i = int(self.bank_next[c])
            self.bank_feats[c, i] = f.to(self.bank_feats.dtype)
            self.bank_next[c] = (i + 1) % self.capacity
            self.bank_count[c] = min(int(self.bank_count[c]) + 1, self.capacity)
        return len(labels)

    @torch.no_grad()
    def add_from_all_processes(self, feats: torch.Tensor, labels: torch.Tensor) -> int:
        """Gather the exemplars of every process and add them all, in rank order, so that
        the banks stay identical across processes. Returns the number stored."""
        if comm.get_world_size() > 1:
            gathered = comm.all_gather((feats.cpu(), labels.cpu()))
            feats = torch.cat([f for f, _ in gathered]).to(self.bank_feats.device)
            labels = torch.cat([lb for _, lb in gathered]).to(self.bank_feats.device)
        return self.add(feats, labels)

    def ordered(self, c: int) -> torch.Tensor:
        """Class ``c``'s exemplars, oldest first: (n, C, S, S)."""
        n = int(self.bank_count[c])
        if n < self.capacity:
            return self.bank_feats[c, :n]
        i = int(self.bank_next[c])
        return torch.cat([self.bank_feats[c, i:], self.bank_feats[c, :i]])


def augmented_boxes(boxes: torch.Tensor, image_size: Tuple[int, int],
                    shifts: Sequence[float] = (0.3, 0.5), scales: Sequence[float] = (0.97, 1.03)
                    ) -> torch.Tensor:
    """Views of high-quality instances: each box shifted by +-r of its WIDTH along x and
    +-r of its HEIGHT along y (4 per ratio), then rescaled about its centre (1 per scale),
    clipped to the image.

    Args:
        boxes: (G, 4) XYXY.
        image_size: (H, W).
    Returns:
        (G, 4 * len(shifts) + len(scales), 4) XYXY.
    """
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    views = []
    for r in shifts:
        for dx, dy in ((r * w, 0 * h), (0 * w, r * h), (-r * w, 0 * h), (0 * w, -r * h)):
            views.append(boxes + torch.cat([dx, dy, dx, dy], dim=1))
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    for s in scales:
        hw, hh = (w[:, 0] * s) / 2, (h[:, 0] * s) / 2
        views.append(torch.stack([cx - hw, cy - hh, cx + hw, cy + hh], dim=1))
    out = torch.stack(views, dim=1)
    H, W = image_size
    out[..., 0::2] = out[..., 0::2].clamp(0, W)
    out[..., 1::2] = out[..., 1::2].clamp(0, H)
    return out


def instance_quality(gt_index: torch.Tensor, gt_classes: torch.Tensor, probs: torch.Tensor,
                     iou: torch.Tensor, num_gt: int, rule: str = "paper",
                     min_score: float = 0.05) -> Tuple[torch.Tensor, torch.Tensor]:
    """Instance quality of each ground truth from the predictions assigned to it.

    Args:
        gt_index: (R,) ground truth each prediction (positive RoI) belongs to.
        gt_classes: (R,) its class c*.
        probs: (R, K+1) softmax scores.
        iou: (R,) IoU with the ground truth (of the regressed box for the paper's rule, of
            the proposal for the official code's).
        num_gt: G.
        rule: "paper" keeps predictions whose argmax class is c*; "code" keeps those
            whose score on c* is >= ``min_score``.
    Returns:
        iq (G,) = mean over kept predictions of score(c*) x IoU (0 if none), count (G,).
    """
    score = probs.gather(1, gt_classes[:, None])[:, 0]
    if rule == "paper":
        keep = probs.argmax(dim=1) == gt_classes
    elif rule == "code":
        keep = score >= min_score
    else:
        raise ValueError(f"rule must be 'paper' or 'code', got {rule!r}")
    idx = gt_index[keep]
    total = torch.zeros(num_gt, device=probs.device).index_add_(0, idx, (score * iou)[keep])
    count = torch.zeros(num_gt, device=probs.device).index_add_(0, idx, torch.ones_like(score[keep]))
    return total / count.clamp(min=1), count


@dataclass
class QualityEvidence:
    """The detection head's predictions for the ground truths of one image, from which
    instance quality is computed (P predictions).

    Attributes:
        gt_index: (P,) the ground truth each prediction is assigned to.
        gt_classes: (P,) that ground truth's class c*.
        probs: (P, K+1) softmax scores.
        iou: (P,) IoU of the prediction's box (regressed for the paper's rule, the proposal
            for the official code's) with its ground truth.
    """
    gt_index: torch.Tensor
    gt_classes: torch.Tensor
    probs: torch.Tensor
    iou: torch.Tensor


@dataclass
class ImitationBatch:
    """Index bookkeeping of one batch: R sampled RoIs and G ground truths of all images.

    Attributes:
        roi_image, roi_label, roi_gt: (R,) image, label (K = background) and ground truth
            (index within its image) of each sampled RoI.
        roi_from_gt: (R,) True for the ground-truth boxes added as proposals.
        gt_boxes: per image (G_i, 4); gt_classes, gt_image, gt_local: (G,) class, image and
            index within the image of each ground truth; gt_first: (N,) first gt of each image.
    """
    roi_image: torch.Tensor
    roi_label: torch.Tensor
    roi_gt: torch.Tensor
    roi_from_gt: torch.Tensor
    gt_boxes: List[torch.Tensor]
    gt_classes: torch.Tensor
    gt_image: torch.Tensor
    gt_local: torch.Tensor
    gt_first: torch.Tensor
    image_sizes: List[Tuple[int, int]]


@dataclass
class SampleTable:
    """Every feature a contrastive row can use, in one table of T entries:
    ``[ground truths (G) | drawn RoIs | drawn bank exemplars | augmented views]``.

    Attributes:
        feats: (T, C, S, S) RoI features (ground truths and RoIs with gradient).
        kind: (T,) 0 ground truth, 1 RoI, 2 bank exemplar, 3 augmented view.
        label: (T,) class of each entry (RoIs: their label, K for background).
        owner: (T,) for ground truths and views, the ground truth (index in the batch) they
            belong to; -1 otherwise.
        image: (T,) the image of ground truths, RoIs and views; -1 for bank exemplars.
        with_grad: number of leading entries (ground truths and RoIs) whose convs keep
            their gradient; the rest are compressed without it.
    """
    feats: torch.Tensor
    kind: torch.Tensor
    label: torch.Tensor
    owner: torch.Tensor
    image: torch.Tensor
    with_grad: int

    GT, ROI, BANK, VIEW = 0, 1, 2, 3


@dataclass
class ContrastiveRows:
    """One row per ground truth that has something to imitate.

    Attributes:
        anchor: (J,) table index of each row's anchor (its ground truth).
        samples: (J, S) table indices, positives first, padded with 0.
        positive, valid: (J, S) bool masks.
        weights: (J,) per-row weights (the official tiers, else 1).
    """
    anchor: torch.Tensor
    samples: torch.Tensor
    positive: torch.Tensor
    valid: torch.Tensor
    weights: torch.Tensor


class FeatureImitation(nn.Module):
    """The imitation branch (training only), in named steps:

    1. :meth:`index_batch`: which image, label and ground truth each RoI belongs to;
    2. :meth:`select_high_quality`: instance quality of every ground truth from the
       detection head's predictions (:class:`QualityEvidence`) and the high-quality test;
    3. :meth:`anchor_features`: each ground truth's own RoI feature (with gradient);
    4. :meth:`build_table`: the candidates, drawn once per batch: background RoIs, bank
       exemplars as they are before this iteration, augmented views of the high-quality
       instances;
    5. :meth:`assemble_rows`: per ground truth, positives (its views if high quality, else
       its class's exemplars) and negatives (background RoIs + other classes' exemplars);
    6. :meth:`loss`: embeddings and the supervised contrastive loss;
    7. :meth:`grow_bank`: the high-quality instances of all processes join the bank.

    Paper defaults; the official code's choices are options: ``quality_rule="code"``
    (score >= 0.05 on c*, proposal IoU), ``quality_proposals="sampled"`` (quality from
    the sampled RoIs only, at most 128 positives per image, instead of every positive
    proposal), ``tiered_positives=True`` (64 bank positives if IQ < 0.25, 32 if < 0.65),
    ``negatives="code"`` (the image's sampled RoIs of other labels only, no bank),
    ``tier_weights=(0.5, 0.1, 0.05)``.
    """

    def __init__(
        self,
        num_classes: int,
        embed: Feat2Embed,
        bank: ExemplarBank,
        temperature: float = 0.6,
        loss_weight: float = 0.5,
        hq_thresh: float = 0.65,
        min_predictions: int = 8,
        num_samples: int = 128,
        max_bank_positives: int = 64,
        tiered_positives: bool = False,
        lq_thresh: float = 0.25,
        quality_rule: str = "paper",
        quality_proposals: str = "all",
        negatives: str = "paper",
        tier_weights: Optional[Sequence[float]] = None,
        shifts: Sequence[float] = (0.3, 0.5),
        scales: Sequence[float] = (0.97, 1.03),
    ):
        super().__init__()
        check_size("FeatureImitation", "num_classes", num_classes)
        check_size("FeatureImitation", "num_samples", num_samples)
        if negatives not in ("paper", "code"):
            raise ValueError(f"negatives must be 'paper' or 'code', got {negatives!r}")
        if quality_proposals not in ("all", "sampled"):
            raise ValueError(f"quality_proposals must be 'all' or 'sampled', got {quality_proposals!r}")
        self.num_classes = num_classes
        self.embed, self.bank = embed, bank
        self.temperature, self.loss_weight = temperature, loss_weight
        self.hq_thresh, self.min_predictions = hq_thresh, min_predictions
        self.num_samples, self.max_bank_positives = num_samples, max_bank_positives
        self.tiered_positives, self.lq_thresh = tiered_positives, lq_thresh
        self.quality_rule, self.quality_proposals = quality_rule, quality_proposals
        self.negatives = negatives
        self.tier_weights = tier_weights
        self.shifts, self.scales = tuple(shifts), tuple(scales)

    @property
    def num_views(self) -> int:
        return 4 * len(self.shifts) + len(self.scales)

    def _bank_positive_count(self, iq: float) -> int:
        if not self.tiered_positives:
            return self.max_bank_positives
        return self.max_bank_positives if iq < self.lq_thresh else self.max_bank_positives // 2

    def _tier_weight(self, iq: float, hq: bool) -> float:
        if self.tier_weights is None:
            return 1.0
        if hq or iq >= self.hq_thresh:
            return self.tier_weights[2]
        return self.tier_weights[0] if iq < self.lq_thresh else self.tier_weights[1]

    @staticmethod
    def _random_subset(idx: torch.Tensor, n: int) -> torch.Tensor:
        return idx if len(idx) <= n else idx[torch.randperm(len(idx), device=idx.device)[:n]]

    # ------------------------------------------------------------------ steps
    @staticmethod
    def index_batch(proposals: List[Instances], targets: List[Instances]) -> ImitationBatch:
        """Step 1. ``proposals``: sampled RoIs per image with ``gt_classes``, ``gt_index``,
        ``from_gt``; ``targets``: ground truth per image."""
        device = targets[0].gt_boxes.device if targets else torch.device("cpu")
        n_roi = torch.tensor([len(p) for p in proposals], device=device)
        n_gt = [len(t) for t in targets]
        return ImitationBatch(
            roi_image=torch.repeat_interleave(torch.arange(len(proposals), device=device), n_roi),
            roi_label=cat([p.gt_classes for p in proposals]),
            roi_gt=cat([p.gt_index for p in proposals]),
            roi_from_gt=cat([p.from_gt for p in proposals]),
            gt_boxes=[t.gt_boxes.tensor for t in targets],
            gt_classes=cat([t.gt_classes for t in targets]),
            gt_image=torch.repeat_interleave(torch.arange(len(targets), device=device),
                                             torch.tensor(n_gt, device=device)),
            gt_local=cat([torch.arange(n, device=device) for n in n_gt]),
            gt_first=torch.tensor([sum(n_gt[:i]) for i in range(len(n_gt))], device=device,
                                  dtype=torch.int64),
            image_sizes=[p.image_size for p in proposals],
        )

    def select_high_quality(self, evidence: List[QualityEvidence], batch: ImitationBatch
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Step 2. Returns iq (G,) and hq (G,) bool: IQ >= ``hq_thresh`` with at least
        ``min_predictions`` kept predictions."""
        iq = torch.zeros(len(batch.gt_classes), device=batch.gt_classes.device)
        hq = torch.zeros(len(batch.gt_classes), dtype=torch.bool, device=iq.device)
        for i, ev in enumerate(evidence):
            G = len(batch.gt_boxes[i])
            if G == 0:
                continue
            q, count = instance_quality(ev.gt_index, ev.gt_classes, ev.probs, ev.iou, G, self.quality_rule)
            first = int(batch.gt_first[i])
            iq[first:first + G] = q
            hq[first:first + G] = (q >= self.hq_thresh) & (count >= self.min_predictions)
        return iq, hq

    @staticmethod
    def anchor_features(pool, features: List[torch.Tensor], batch: ImitationBatch,
                        roi_feats: torch.Tensor) -> torch.Tensor:
        """Step 3. (G, C, S, S): each ground truth's RoI feature, taken from its own
        proposal among the sampled RoIs (with gradient), pooled here if it was not sampled."""
        G = len(batch.gt_classes)
        gt_feat = roi_feats.new_zeros((G,) + roi_feats.shape[1:])
        have = torch.zeros(G, dtype=torch.bool, device=roi_feats.device)
        rows = torch.nonzero(batch.roi_from_gt, as_tuple=True)[0]
        if len(rows):
            g = batch.gt_first[batch.roi_image[rows]] + batch.roi_gt[rows]
            gt_feat = gt_feat.index_copy(0, g, roi_feats[rows])
            have[g] = True
        if not bool(have.all()):
            miss = torch.nonzero(~have, as_tuple=True)[0]
            per_image = [miss[batch.gt_image[miss] == i] for i in range(len(batch.gt_boxes))]
            pooled = pool(features, [Boxes(batch.gt_boxes[i][batch.gt_local[m]])
                                     for i, m in enumerate(per_image)])
            gt_feat = gt_feat.index_copy(0, cat(per_image), pooled)
        return gt_feat

    def build_table(self, pool, features: List[torch.Tensor], batch: ImitationBatch,
                    gt_feat: torch.Tensor, roi_feats: torch.Tensor, hq: torch.Tensor) -> SampleTable:
        """Step 4. The candidates, drawn once per batch and shared by the rows: at most
        ``num_samples`` background RoIs (official negatives: up to 2 x ``num_samples`` RoIs
        of each image, any label); per class, one random draw of at most
        ``max_bank_positives`` exemplars for the classes that need positives (and, for the
        paper's negatives, ``num_samples / (K - 1)`` for every class); the augmented views
        of the high-quality instances (pooled without gradient)."""
        K, device = self.num_classes, roi_feats.device
        if self.negatives == "paper":
            roi_sel = self._random_subset(torch.nonzero(batch.roi_label == K, as_tuple=True)[0],
                                          self.num_samples)
        else:
            roi_sel = cat([self._random_subset(torch.nonzero(batch.roi_image == i, as_tuple=True)[0],
                                               2 * self.num_samples)
                           for i in range(len(batch.gt_boxes))])
        parts = [gt_feat, roi_feats[roi_sel]]
        kinds = [torch.full((len(gt_feat),), SampleTable.GT), torch.full((len(roi_sel),), SampleTable.ROI)]
        labels = [batch.gt_classes, batch.roi_label[roi_sel]]
        owners = [torch.arange(len(gt_feat)), torch.full((len(roi_sel),), -1)]
        images = [batch.gt_image, batch.roi_image[roi_sel]]
        with torch.no_grad():  # the bank as it is before this iteration
            need = set(batch.gt_classes[~hq].tolist())
            for c in range(K):
                n_c = int(self.bank.bank_count[c])
                take = self.max_bank_positives if c in need else 0
                if self.negatives == "paper":
                    take = max(take, self.num_samples // max(K - 1, 1))
                if n_c == 0 or take == 0:
                    continue
                sel = self._random_subset(torch.arange(n_c, device=device), take)
                parts.append(self.bank.ordered(c)[sel].to(roi_feats.dtype))
                kinds.append(torch.full((len(sel),), SampleTable.BANK))
                labels.append(torch.full((len(sel),), c))
                owners.append(torch.full((len(sel),), -1))
                images.append(torch.full((len(sel),), -1))
            hq_idx = torch.nonzero(hq, as_tuple=True)[0]
            if len(hq_idx):  # views, image by image in ground-truth order (= hq_idx's order)
                views = [augmented_boxes(batch.gt_boxes[i][hq[batch.gt_image == i]], batch.image_sizes[i],
                                         self.shifts, self.scales).reshape(-1, 4)
                         for i in range(len(batch.gt_boxes))]
                parts.append(pool(features, [Boxes(v) for v in views]).detach())
                kinds.append(torch.full((len(hq_idx) * self.num_views,), SampleTable.VIEW))
                labels.append(batch.gt_classes[hq_idx].repeat_interleave(self.num_views).cpu())
                owners.append(hq_idx.repeat_interleave(self.num_views).cpu())
                images.append(batch.gt_image[hq_idx].repeat_interleave(self.num_views).cpu())
        return SampleTable(feats=torch.cat(parts), kind=torch.cat(kinds).to(device),
                           label=torch.cat([lb.to(device) for lb in labels]).long(),
                           owner=torch.cat([o.to(device) for o in owners]).long(),
                           image=torch.cat([m.to(device) for m in images]).long(),
                           with_grad=len(gt_feat) + len(roi_sel))

    def assemble_rows(self, table: SampleTable, batch: ImitationBatch, iq: torch.Tensor,
                      hq: torch.Tensor) -> Optional[ContrastiveRows]:
        """Step 5. Per ground truth g of class c: positives are its own views if it is high
        quality, else (up to ``max_bank_positives``) exemplars of c; negatives fill up to
        ``num_samples``: the background RoIs and the exemplars of the other classes (paper)
        or the sampled RoIs of g's image with another label (official). Ground truths with
        nothing to imitate yet (an empty bank) get no row. None if no row."""
        rows, n_pos, weights = [], [], []
        roi_rows = torch.nonzero(table.kind == SampleTable.ROI, as_tuple=True)[0]
        bank_rows = torch.nonzero(table.kind == SampleTable.BANK, as_tuple=True)[0]
        for g in range(len(batch.gt_classes)):
            c = int(batch.gt_classes[g])
            if hq[g]:
                pos = torch.nonzero((table.kind == SampleTable.VIEW) & (table.owner == g), as_tuple=True)[0]
            else:
                own = bank_rows[table.label[bank_rows] == c]
                pos = self._random_subset(own, self._bank_positive_count(float(iq[g])))
                if len(pos) == 0:
                    continue
            if self.negatives == "paper":
                neg_pool = torch.cat([roi_rows, bank_rows[table.label[bank_rows] != c]])
            else:
                neg_pool = roi_rows[(table.image[roi_rows] == batch.gt_image[g]) & (table.label[roi_rows] != c)]
            neg = self._random_subset(neg_pool, max(self.num_samples - len(pos), 0))
            rows.append((g, torch.cat([pos, neg])))
            n_pos.append(len(pos))
            weights.append(self._tier_weight(float(iq[g]), bool(hq[g])))
        if not rows:
            return None
        device = table.feats.device
        S = max(len(r) for _, r in rows)
        samples = torch.zeros(len(rows), S, dtype=torch.int64, device=device)
        valid = torch.zeros(len(rows), S, dtype=torch.bool, device=device)
        positive = torch.zeros(len(rows), S, dtype=torch.bool, device=device)
        for j, ((_, r), npos) in enumerate(zip(rows, n_pos)):
            samples[j, :len(r)] = r
            valid[j, :len(r)] = True
            positive[j, :npos] = True
        return ContrastiveRows(anchor=torch.tensor([g for g, _ in rows], device=device), samples=samples,
                               positive=positive, valid=valid,
                               weights=torch.tensor(weights, device=device, dtype=table.feats.dtype))

    def loss(self, table: SampleTable, rows: Optional[ContrastiveRows]) -> torch.Tensor:
        """Step 6. The mean over rows of the (weighted) supervised contrastive loss, before
        ``loss_weight``. Only the ground truths' and RoIs' convs keep their gradient; the
        MLP runs with gradient for every entry."""
        n = table.with_grad
        with torch.no_grad():
            frozen = self.embed.compress(table.feats[n:]) if len(table.feats) > n else \
                table.feats.new_zeros((0, table.feats.shape[1]))
        emb = self.embed.project(torch.cat([self.embed.compress(table.feats[:n]), frozen]))
        if rows is None:  # keep every parameter in the graph (DDP) with a zero loss
            return emb.sum() * 0.0 + zero_dependency(self.embed)
        return supervised_contrastive_loss(emb[rows.anchor], emb[rows.samples], rows.positive,
                                           self.temperature, weights=rows.weights, valid=rows.valid).mean()

    @torch.no_grad()
    def grow_bank(self, gt_feat: torch.Tensor, batch: ImitationBatch, hq: torch.Tensor,
                  reweight=None) -> None:
        """Step 7, after the loss (an image never imitates its own new exemplars): the
        high-quality instances of ALL processes join their classes' FIFOs."""
        hq_idx = torch.nonzero(hq, as_tuple=True)[0]
        new = gt_feat[hq_idx].detach()
        if reweight is not None and len(new):
            new = reweight(new)
        self.bank.add_from_all_processes(new, batch.gt_classes[hq_idx])

    def forward(self, pool, features: List[torch.Tensor], proposals: List[Instances],
                targets: List[Instances], roi_feats: torch.Tensor, evidence: List[QualityEvidence],
                reweight=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            pool: ``(features, list of Boxes) -> (M, C, S, S)``, the head's RoI pooler.
            features: the FPN maps the head pools from.
            proposals: sampled proposals per image with ``gt_classes``, ``gt_index`` and
                ``from_gt`` (True for the ground-truth boxes added as proposals).
            targets: ground truth per image (``gt_boxes``, ``gt_classes``).
            roi_feats: (R, C, S, S) pooled features of all sampled proposals, in order.
            evidence: per image, the predictions that instance quality is computed from.
            reweight: optional ``(M, C, S, S) -> (M, C, S, S)`` applied to features stored
                in the bank (the official code's feature reweighting).
        Returns:
            {"loss_con": (weighted) loss}
        """
        batch = self.index_batch(proposals, targets)
        iq, hq = self.select_high_quality(evidence, batch)
        gt_feat = self.anchor_features(pool, features, batch, roi_feats)
        table = self.build_table(pool, features, batch, gt_feat, roi_feats, hq)
        rows = self.assemble_rows(table, batch, iq, hq)
        loss = self.loss(table, rows)
        self.grow_bank(gt_feat, batch, hq, reweight)

        if current_storage() is not None:  # the counts cost a device sync: only in a trainer
            put_scalars(**{f"imitation/bank_fill/{c}": int(self.bank.bank_count[c]) for c in range(self.num_classes)},
                        **{"imitation/hq_found": int(hq.sum()),
                           "imitation/anchors": 0 if rows is None else len(rows.anchor)},
                        smoothing_hint=False)
        return {"loss_con": loss * self.loss_weight}


def _no_evidence(like: torch.Tensor) -> QualityEvidence:
    """Evidence of an image without positive predictions."""
    idx = torch.zeros(0, dtype=torch.int64, device=like.device)
    return QualityEvidence(idx, idx, like.new_zeros((0, like.shape[-1])), like.new_zeros(0))


@ROI_HEADS_REGISTRY.register()
class FeatureImitationROIHeads(StandardROIHeads):
    """``StandardROIHeads`` with CFINet's feature imitation (``imitation``) in training.

    ``imitation=None`` makes it exactly Faster R-CNN's head. ``reweight_features=True``
    enables the official code's option of multiplying the detection RoI features by
    ``1 + softmax_channels(Feat2Embed convs)`` at training and test time.
    """

    @configurable
    def __init__(self, *, imitation: Optional[FeatureImitation] = None,
                 reweight_features: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.imitation = imitation
        if reweight_features and imitation is None:
            raise ValueError("reweight_features needs the imitation branch")
        self.reweight_features = reweight_features

    @torch.no_grad()
    def label_and_sample_proposals(self, proposals: List[Instances], targets: List[Instances]):
        if self.imitation is None or not self.training:
            return super().label_and_sample_proposals(proposals, targets)
        # remember which proposals are the ground-truth boxes and which gt each belongs to
        for p in proposals:
            p.from_gt = torch.zeros(len(p), dtype=torch.bool, device=p.objectness_logits.device)
        for t in targets:
            t.from_gt = torch.ones(len(t), dtype=torch.bool, device=t.gt_boxes.device)
            t.gt_index = torch.arange(len(t), device=t.gt_boxes.device)
        try:
            out = super().label_and_sample_proposals(proposals, targets)
        finally:
            for t in targets:
                t.remove("from_gt")
                t.remove("gt_index")
        for p in out:
            if not p.has("gt_index"):  # image without ground truth
                p.gt_index = torch.zeros(len(p), dtype=torch.int64, device=p.gt_classes.device)
        return out

    @torch.no_grad()
    def positive_proposals(self, proposals: List[Instances], targets: List[Instances]) -> List[Instances]:
        """Every proposal (not only the sampled ones, and not the added ground-truth boxes)
        that the proposal matcher makes positive, with ``gt_index`` and ``gt_boxes``/``gt_classes``
        of its ground truth: the predictions instance quality is computed from by default."""
        out = []
        for p, t in zip(proposals, targets):
            if len(t):
                matched, labels = self.proposal_matcher(pairwise_iou(t.gt_boxes, p.proposal_boxes))
                keep = torch.nonzero(labels == 1, as_tuple=True)[0]
            else:
                matched = keep = torch.zeros(0, dtype=torch.int64, device=p.proposal_boxes.device)
            q = Instances(p.image_size, proposal_boxes=p.proposal_boxes[keep])
            q.gt_index = matched[keep]
            q.gt_boxes = t.gt_boxes[q.gt_index]
            q.gt_classes = t.gt_classes[q.gt_index]
            out.append(q)
        return out

    def _reweight(self, roi_feats: torch.Tensor) -> torch.Tensor:
        """The official code's option: x * (1 + softmax over channels of Feat2Embed's convs)."""
        w = 1 + torch.softmax(self.imitation.embed.compress(roi_feats), dim=1)
        return roi_feats * w[:, :, None, None]

    def _head_in(self, roi_feats: torch.Tensor) -> torch.Tensor:
        return self._reweight(roi_feats) if self.reweight_features else roi_feats

    @torch.no_grad()
    def quality_evidence(self, predictions, proposals: List[Instances], feats: List[torch.Tensor],
                         positives: Optional[List[Instances]]) -> List[QualityEvidence]:
        """Per image, the predictions for its ground truths: those of ``positives`` (every
        positive proposal, run through the box head here without gradient) or, with
        ``positives=None`` (the official code), those of the sampled foreground RoIs that are
        not the ground-truth boxes themselves."""
        if positives is None:  # the sampled foreground RoIs, without the ground-truth boxes
            positives = [p[(p.gt_classes < self.num_classes) & ~p.from_gt] for p in proposals]
            keep = [(p.gt_classes < self.num_classes) & ~p.from_gt for p in proposals]
            probs = [pr[k] for pr, k in zip(self.box_predictor.predict_probs(predictions, proposals), keep)]
            boxes = [b[k] for b, k in zip(self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals),
                                          keep)]
        else:  # every positive proposal through the box head
            roi = self.box_pooler(feats, [q.proposal_boxes for q in positives])
            preds = self.box_predictor(self.box_head(self._head_in(roi)))
            probs = self.box_predictor.predict_probs(preds, positives)
            boxes = self.box_predictor.predict_boxes_for_gt_classes(preds, positives)
        if self.imitation.quality_rule != "paper":  # the official code: IoU of the proposal
            boxes = [q.proposal_boxes.tensor for q in positives]
        return [QualityEvidence(q.gt_index, q.gt_classes, pr, aligned_iou(b, q.gt_boxes.tensor))
                if len(q) else _no_evidence(pr) for q, pr, b in zip(positives, probs, boxes)]

    def _forward_box_with_imitation(self, features: Dict[str, torch.Tensor], proposals: List[Instances],
                                    targets: List[Instances], positives: Optional[List[Instances]]):
        feats = [features[f] for f in self.box_in_features]
        roi_feats = self.box_pooler(feats, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(self._head_in(roi_feats)))
        losses = self.box_predictor.losses(predictions, proposals)
        evidence = self.quality_evidence(predictions, proposals, feats, positives)
        losses.update(self.imitation(self.box_pooler, feats, proposals, targets, roi_feats, evidence,
                                     reweight=self._reweight if self.reweight_features else None))
        return losses

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        if self.imitation is None or self.training:
            # training with imitation goes through forward -> _forward_box_with_imitation
            return super()._forward_box(features, proposals)
        feats = [features[f] for f in self.box_in_features]
        roi_feats = self.box_pooler(feats, [x.proposal_boxes for x in proposals])
        predictions = self.box_predictor(self.box_head(self._head_in(roi_feats)))
        return self.box_predictor.inference(predictions, proposals)[0]

    def forward(self, images, features, proposals, targets=None):
        """StandardROIHeads' training path with the imitation branch: the positive proposals
        are taken before sampling (for instance quality), the branch gets the targets."""
        if self.imitation is None or not self.training:
            return super().forward(images, features, proposals, targets)
        if targets is None:
            raise ValueError("FeatureImitationROIHeads needs targets in training")
        positives = self.positive_proposals(proposals, targets) \
            if self.imitation.quality_proposals == "all" else None
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box_with_imitation(features, proposals, targets, positives)
        losses.update(self._forward_mask(features, proposals))
        losses.update(self._forward_keypoint(features, proposals))
        return proposals, losses
