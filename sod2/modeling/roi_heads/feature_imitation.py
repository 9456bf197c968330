"""
CFINet's feature imitation (FI) branch and the ROI heads that host it
(../shared/specs/cfinet.md, "Feature Imitation branch").

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

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import cat
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from ...layers import supervised_contrastive_loss
from ...layers.losses import aligned_iou

__all__ = ["Feat2Embed", "ExemplarBank", "FeatureImitation", "FeatureImitationROIHeads",
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
        self.capacity = capacity
        self.register_buffer("bank_feats", torch.zeros(num_classes, capacity, channels, roi_size,
                                                       roi_size, dtype=dtype))
        self.register_buffer("bank_count", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("bank_next", torch.zeros(num_classes, dtype=torch.int64))

    @property
    def num_classes(self) -> int:
        return self.bank_feats.shape[0]

    @torch.no_grad()
    def add(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Append exemplars in order; a full class overwrites its oldest entry.

        Args:
            feats: (N, C, S, S); labels: (N,) class indices.
        """
        for f, c in zip(feats, labels.tolist()):
            i = int(self.bank_next[c])
            self.bank_feats[c, i] = f.to(self.bank_feats.dtype)
            self.bank_next[c] = (i + 1) % self.capacity
            self.bank_count[c] = min(int(self.bank_count[c]) + 1, self.capacity)

    @torch.no_grad()
    def add_from_all_processes(self, feats: torch.Tensor, labels: torch.Tensor) -> int:
        """Gather the exemplars of every process and add them all, in rank order, so that
        the banks stay identical across processes. Returns the number added."""
        if comm.get_world_size() > 1:
            gathered = comm.all_gather((feats.cpu(), labels.cpu()))
            feats = torch.cat([f for f, _ in gathered]).to(self.bank_feats.device)
            labels = torch.cat([lb for _, lb in gathered]).to(self.bank_feats.device)
        self.add(feats, labels)
        return len(labels)

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


class FeatureImitation(nn.Module):
    """The imitation branch (training only). See the module docstring and the spec.

    Paper defaults; the official code's choices are options:
    ``quality_rule="code"`` (score >= 0.05 on c*, proposal IoU), ``tiered_positives=True``
    (64 bank positives if IQ < 0.25, 32 if < 0.65), ``negatives="code"`` (the image's
    sampled RoIs of other labels only, no bank), ``tier_weights=(0.5, 0.1, 0.05)``.
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
        negatives: str = "paper",
        tier_weights: Optional[Sequence[float]] = None,
        shifts: Sequence[float] = (0.3, 0.5),
        scales: Sequence[float] = (0.97, 1.03),
    ):
        super().__init__()
        if negatives not in ("paper", "code"):
            raise ValueError(f"negatives must be 'paper' or 'code', got {negatives!r}")
        self.num_classes = num_classes
        self.embed, self.bank = embed, bank
        self.temperature, self.loss_weight = temperature, loss_weight
        self.hq_thresh, self.min_predictions = hq_thresh, min_predictions
        self.num_samples, self.max_bank_positives = num_samples, max_bank_positives
        self.tiered_positives, self.lq_thresh = tiered_positives, lq_thresh
        self.quality_rule, self.negatives = quality_rule, negatives
        self.tier_weights = tier_weights
        self.shifts, self.scales = tuple(shifts), tuple(scales)

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

    def forward(self, pool, features: List[torch.Tensor], proposals: List[Instances],
                targets: List[Instances], roi_feats: torch.Tensor, probs: torch.Tensor,
                pred_iou: torch.Tensor, reweight=None) -> Dict[str, torch.Tensor]:
        """
        Args:
            pool: ``(features, list of Boxes) -> (N, C, S, S)``, the head's RoI pooler.
            features: the FPN maps the head pools from.
            proposals: sampled proposals per image with ``gt_classes``, ``gt_index`` and
                ``from_gt`` (True for the ground-truth boxes added as proposals).
            targets: ground truth per image (``gt_boxes``, ``gt_classes``).
            roi_feats: (R, C, S, S) pooled features of all sampled proposals, in order.
            probs: (R, K+1) detection scores; pred_iou: (R,) IoU with the assigned ground
                truth of the regressed box (paper's rule) or of the proposal (code's rule).
            reweight: optional ``(N, C, S, S) -> (N, C, S, S)`` applied to features stored
                in the bank (the official code's feature reweighting).
        Returns:
            {"loss_con": (weighted) loss}

        For speed, the candidates are drawn once per batch and shared: for each class, one
        random draw of at most ``max_bank_positives`` bank exemplars; at most ``num_samples``
        background RoIs (and other-class exemplars); each ground truth then samples its own
        set from these. Only the drawn features go through the convs.
        """
        device = roi_feats.device
        K = self.num_classes
        n_per_image = [len(p) for p in proposals]
        starts = [sum(n_per_image[:i]) for i in range(len(proposals))]
        roi_image = torch.repeat_interleave(torch.arange(len(proposals), device=device),
                                            torch.tensor(n_per_image, device=device))
        roi_label = torch.cat([p.gt_classes for p in proposals])
        from_gt = torch.cat([p.from_gt for p in proposals])
        roi_gt = torch.cat([p.gt_index for p in proposals])

        gt_boxes = [t.gt_boxes.tensor for t in targets]
        gt_cls = torch.cat([t.gt_classes for t in targets])
        n_gt_img = [len(b) for b in gt_boxes]
        gt_img = torch.repeat_interleave(torch.arange(len(targets), device=device),
                                         torch.tensor(n_gt_img, device=device))
        gt_local = torch.cat([torch.arange(n, device=device) for n in n_gt_img])

        # instance quality and high-quality selection, per image
        hq = torch.zeros(len(gt_cls), dtype=torch.bool, device=device)
        iq = torch.zeros(len(gt_cls), device=device)
        offset = 0
        for i, prop in enumerate(proposals):
            G = n_gt_img[i]
            if G:
                rows = slice(starts[i], starts[i] + n_per_image[i])
                fg = (prop.gt_classes < K) & ~prop.from_gt
                q, count = instance_quality(prop.gt_index[fg], prop.gt_classes[fg], probs[rows][fg],
                                            pred_iou[rows][fg], G, self.quality_rule)
                iq[offset:offset + G] = q
                hq[offset:offset + G] = (q >= self.hq_thresh) & (count >= self.min_predictions)
            offset += G
        hq_idx = torch.nonzero(hq, as_tuple=True)[0]

        # anchors: the RoI feature of each ground truth box (its own proposal), with gradient;
        # ground truths whose proposal was not sampled are pooled here
        gt_feat = roi_feats.new_zeros((len(gt_cls),) + roi_feats.shape[1:])
        have = torch.zeros(len(gt_cls), dtype=torch.bool, device=device)
        gt_first = torch.tensor([0] + list(torch.cumsum(torch.tensor(n_gt_img), 0)[:-1].tolist()),
                                device=device, dtype=torch.int64)
        rows_gt = torch.nonzero(from_gt, as_tuple=True)[0]
        if len(rows_gt):
            g_of = gt_first[roi_image[rows_gt]] + roi_gt[rows_gt]
            gt_feat = gt_feat.index_copy(0, g_of, roi_feats[rows_gt])
            have[g_of] = True
        if not bool(have.all()):
            miss = torch.nonzero(~have, as_tuple=True)[0]
            pooled = pool(features, [Boxes(gt_boxes[i][gt_local[miss][gt_img[miss] == i]])
                                     for i in range(len(targets))])
            order = torch.cat([miss[gt_img[miss] == i] for i in range(len(targets))])
            gt_feat = gt_feat.index_copy(0, order, pooled)

        # candidate pools, drawn once per batch
        if self.negatives == "paper":
            roi_sel = self._random_subset(torch.nonzero(roi_label == K, as_tuple=True)[0], self.num_samples)
        else:  # the image's sampled RoIs (any label; each ground truth keeps other labels)
            roi_sel = torch.cat([self._random_subset(torch.nonzero(roi_image == i, as_tuple=True)[0],
                                                     2 * self.num_samples)
                                 for i in range(len(proposals))])
        with torch.no_grad():  # bank exemplars as they are before this iteration
            bank_sel, bank_sel_cls = [], []
            need = set(gt_cls[~hq].tolist())
            for c in range(K):
                n_c = int(self.bank.bank_count[c])
                if n_c == 0:
                    continue
                take = self.max_bank_positives if c in need else 0
                if self.negatives == "paper":
                    take = max(take, self.num_samples // max(K - 1, 1))
                if take == 0:
                    continue
                sel = self._random_subset(torch.arange(n_c, device=device), take)
                bank_sel.append(self.bank.ordered(c)[sel])
                bank_sel_cls.append(torch.full((len(sel),), c, dtype=torch.int64, device=device))
            bank_feats = torch.cat(bank_sel).to(roi_feats.dtype) if bank_sel else \
                roi_feats.new_zeros((0,) + roi_feats.shape[1:])
            bank_cls = torch.cat(bank_sel_cls) if bank_sel_cls else \
                torch.zeros(0, dtype=torch.int64, device=device)
            conv_bank = self.embed.compress(bank_feats) if len(bank_feats) else \
                roi_feats.new_zeros((0, roi_feats.shape[1]))
            V = 4 * len(self.shifts) + len(self.scales)
            conv_aug = roi_feats.new_zeros((0, roi_feats.shape[1]))
            if len(hq_idx):  # augmented views of the high-quality instances
                views = [augmented_boxes(gt_boxes[i][hq[gt_img == i]], proposals[i].image_size,
                                         self.shifts, self.scales).reshape(-1, 4)
                         for i in range(len(targets))]
                conv_aug = self.embed.compress(pool(features, [Boxes(v) for v in views]))
        # hq_idx is sorted and the views were built image by image in gt order: same order

        # one embedding table: [ground truths | drawn RoIs | drawn exemplars | views]
        emb = self.embed.project(torch.cat([self.embed.compress(torch.cat([gt_feat, roi_feats[roi_sel]])),
                                            conv_bank, conv_aug]))
        n_gt, n_roi = len(gt_cls), len(roi_sel)
        roi0, bank0, aug0 = n_gt, n_gt + n_roi, n_gt + n_roi + len(bank_cls)
        sel_label, sel_image = roi_label[roi_sel], roi_image[roi_sel]

        rows, n_pos, weights = [], [], []
        for g in range(n_gt):
            c = int(gt_cls[g])
            if hq[g]:
                k = int(torch.nonzero(hq_idx == g)[0])
                pos = torch.arange(aug0 + k * V, aug0 + (k + 1) * V, device=device)
            else:
                cand = torch.nonzero(bank_cls == c, as_tuple=True)[0]
                pos = bank0 + self._random_subset(cand, self._bank_positive_count(float(iq[g])))
                if len(pos) == 0:
                    continue  # nothing to imitate yet
            if self.negatives == "paper":  # background RoIs + other classes' exemplars
                neg_pool = torch.cat([roi0 + torch.arange(n_roi, device=device),
                                      bank0 + torch.nonzero(bank_cls != c, as_tuple=True)[0]])
            else:  # this image's sampled RoIs with another label
                mine = (sel_image == gt_img[g]) & (sel_label != c)
                neg_pool = roi0 + torch.nonzero(mine, as_tuple=True)[0]
            neg = self._random_subset(neg_pool, max(self.num_samples - len(pos), 0))
            rows.append(torch.cat([torch.tensor([g], device=device), pos, neg]))
            n_pos.append(len(pos))
            weights.append(self._tier_weight(float(iq[g]), bool(hq[g])))

        if rows:
            S = max(len(r) for r in rows) - 1
            idx = torch.zeros(len(rows), S, dtype=torch.int64, device=device)
            valid = torch.zeros(len(rows), S, dtype=torch.bool, device=device)
            positive = torch.zeros(len(rows), S, dtype=torch.bool, device=device)
            for j, (r, npos) in enumerate(zip(rows, n_pos)):
                idx[j, :len(r) - 1] = r[1:]
                valid[j, :len(r) - 1] = True
                positive[j, :npos] = True
            per_gt = supervised_contrastive_loss(
                emb[torch.stack([r[0] for r in rows])], emb[idx], positive, self.temperature,
                weights=torch.tensor(weights, device=device, dtype=emb.dtype), valid=valid)
            loss = per_gt.mean()
        else:  # keep every parameter in the graph (DDP) with a zero loss
            loss = emb.sum() * 0.0 + sum(p.sum() for p in self.embed.parameters()) * 0.0

        # grow the bank after the loss (an image never imitates its own new exemplars),
        # with the exemplars of all processes
        new = gt_feat[hq_idx].detach()
        if reweight is not None and len(new):
            new = reweight(new)
        self.bank.add_from_all_processes(new, gt_cls[hq_idx])

        storage = get_event_storage()
        for c in range(K):
            storage.put_scalar(f"imitation/bank_fill/{c}", int(self.bank.bank_count[c]),
                               smoothing_hint=False)
        storage.put_scalar("imitation/hq_found", len(hq_idx), smoothing_hint=False)
        storage.put_scalar("imitation/anchors", len(rows), smoothing_hint=False)
        return {"loss_con": loss * self.loss_weight}


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
        out = super().label_and_sample_proposals(proposals, targets)
        for t, p in zip(targets, out):
            t.remove("from_gt")
            if not p.has("gt_index"):  # image without ground truth
                p.gt_index = torch.zeros(len(p), dtype=torch.int64, device=p.gt_classes.device)
        return out

    def _reweight(self, roi_feats: torch.Tensor) -> torch.Tensor:
        """The official code's option: x * (1 + softmax over channels of Feat2Embed's convs)."""
        w = 1 + torch.softmax(self.imitation.embed.compress(roi_feats), dim=1)
        return roi_feats * w[:, :, None, None]

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances]):
        if self.imitation is None:
            return super()._forward_box(features, proposals)
        feats = [features[f] for f in self.box_in_features]
        roi_feats = self.box_pooler(feats, [x.proposal_boxes for x in proposals])
        head_in = self._reweight(roi_feats) if self.reweight_features else roi_feats
        predictions = self.box_predictor(self.box_head(head_in))
        if not self.training:
            return self.box_predictor.inference(predictions, proposals)[0]
        losses = self.box_predictor.losses(predictions, proposals)
        with torch.no_grad():
            probs = torch.cat(self.box_predictor.predict_probs(predictions, proposals))
            if self.imitation.quality_rule == "paper":  # IoU of the regressed box
                boxes = torch.cat(self.box_predictor.predict_boxes_for_gt_classes(predictions, proposals))
            else:  # IoU of the proposal
                boxes = cat([p.proposal_boxes.tensor for p in proposals])
            gts = cat([p.gt_boxes.tensor if p.has("gt_boxes") else p.proposal_boxes.tensor
                       for p in proposals])
            pred_iou = aligned_iou(boxes, gts)
        losses.update(self.imitation(self.box_pooler, feats, proposals, self._targets, roi_feats,
                                     probs, pred_iou,
                                     reweight=self._reweight if self.reweight_features else None))
        return losses

    def forward(self, images, features, proposals, targets=None):
        # the imitation branch needs the ground truth of this batch in _forward_box
        self._targets = targets
        try:
            return super().forward(images, features, proposals, targets)
        finally:
            self._targets = None
