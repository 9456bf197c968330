"""
Foreground Probing ("Unmasking the Tiny: Foreground Probing for Small Object Detection"):
sparse token selection (STSM) and foreground refinement (FRM) on a dense detector's
objectness (projects/ForegroundProbing/README.md).

* STSM (:meth:`ForegroundProbe.select`): per image, the K locations of all levels with the
  highest objectness; their classification and regression features (the last maps before
  the head's 1x1 prediction convs) are gathered WITH their gradients.
* FRM (:meth:`ForegroundProbe.refine`): ``Q_cls, K_cls = W F_cls``; ``Q_reg, K_reg, V_reg =
  W F_reg``; ``A_x = softmax(Q_x K_x^T / sqrt(d_k))``; a gate ``lambda = sigmoid(W_l
  [mean F_reg ; mean F_cls])`` per image (or a fixed value); ``A = lambda A_reg + (1 - lambda)
  A_cls``; ``F~ = [F_reg, A V_reg]``; a linear layer gives each token's refined objectness logit.
* L_ref (:meth:`ForegroundProbe.losses`): binary cross-entropy of the refined logits against
  each token's foreground label (a positive of the assignment, or IoU >= 0.5 with a ground
  truth), averaged over the selected tokens.
* Inference (:meth:`ForegroundProbe.apply`): the refined objectness replaces the original one
  of the K tokens ("replace", default), or only the K tokens remain candidates ("tokens_only").
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ForegroundProbe"]


class ForegroundProbe(nn.Module):
    """STSM + FRM + L_ref, head-agnostic: it sees flattened per-location tensors.

    Args:
        cls_dim, reg_dim: D_cls and D_reg, the channels of the head's classification and
            regression features (320 for YOLOX-X).
        num_tokens: K (the paper's 500).
        key_dim, value_dim: d_k and d_v of the projections (not given by the paper; 128).
        gate: "learnable" (the paper's lambda = sigmoid(W [f_reg; f_cls])) or a float in
            [0, 1] (the fixed-lambda ablation).
        loss_weight: lambda_ref.
        target: "assignment" (a token is foreground if the label assignment, e.g. SimOTA,
            made it a positive) or "iou" (IoU of its box with its best ground truth >=
            ``iou_thresh``).
        inference: "replace" (the refined objectness replaces the original for the K tokens)
            or "tokens_only" (only the K tokens can become detections).
        prior_prob: initial foreground probability of the refined logit (YOLOX's objectness
            prior, 0.01).
    """

    def __init__(self, cls_dim: int, reg_dim: int, num_tokens: int = 500, key_dim: int = 128,
                 value_dim: int = 128, gate: Union[str, float] = "learnable", loss_weight: float = 1.0,
                 target: str = "assignment", iou_thresh: float = 0.5, inference: str = "replace",
                 prior_prob: float = 0.01):
        super().__init__()
        if not (gate == "learnable" or (isinstance(gate, (int, float)) and 0.0 <= float(gate) <= 1.0)):
            raise ValueError(f"gate must be 'learnable' or a number in [0, 1], got {gate!r}")
        if target not in ("assignment", "iou"):
            raise ValueError(f"target must be 'assignment' or 'iou', got {target!r}")
        if inference not in ("replace", "tokens_only"):
            raise ValueError(f"inference must be 'replace' or 'tokens_only', got {inference!r}")
        if num_tokens < 1:
            raise ValueError(f"num_tokens must be >= 1, got {num_tokens}")
        self.num_tokens, self.key_dim = int(num_tokens), int(key_dim)
        self.q_cls = nn.Linear(cls_dim, key_dim)
        self.k_cls = nn.Linear(cls_dim, key_dim)
        self.q_reg = nn.Linear(reg_dim, key_dim)
        self.k_reg = nn.Linear(reg_dim, key_dim)
        self.v_reg = nn.Linear(reg_dim, value_dim)
        self.gate = nn.Linear(reg_dim + cls_dim, 1) if gate == "learnable" else None
        self.fixed_gate = None if gate == "learnable" else float(gate)
        self.pred = nn.Linear(reg_dim + value_dim, 1)
        nn.init.constant_(self.pred.bias, -math.log((1 - prior_prob) / prior_prob))
        self.loss_weight, self.target, self.iou_thresh = loss_weight, target, iou_thresh
        self.inference_mode = inference

    # ------------------------------------------------------------------ STSM
    def select(self, obj_logits: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Top-K objectness per image (ties: the lower location index first).

        Args:
            obj_logits: (N, A) objectness logits of all locations of all levels.
            valid: optional (N, A) bool, False for locations outside an image (batch padding);
                they are never selected while enough valid ones exist.
        Returns:
            (N, K') int64 location indices, K' = min(K, A), best first.
        """
        score = obj_logits.detach().float()
        if valid is not None:
            score = score.masked_fill(~valid, float("-inf"))
        k = min(self.num_tokens, score.shape[1])
        order = torch.sort(score, dim=1, descending=True, stable=True).indices
        return order[:, :k]

    @staticmethod
    def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """(N, A, D), (N, K) -> (N, K, D), with gradients."""
        return torch.gather(x, 1, idx[:, :, None].expand(-1, -1, x.shape[2]))

    @staticmethod
    def gather_levels(feats, idx: torch.Tensor) -> torch.Tensor:
        """Gather tokens straight from per-level maps, without flattening every location's
        features into one (N, A, D) copy (at 1504 px with P2, YOLOX-X has ~190k locations).

        Args:
            feats: list over levels of (N, D, H_l, W_l); locations are numbered level by level,
                row-major within a level (the order of the flattened predictions).
            idx: (N, K) location indices.
        Returns:
            (N, K, D), with gradients.
        """
        out, start = None, 0
        for f in feats:
            hw = f.shape[2] * f.shape[3]
            inside = (idx >= start) & (idx < start + hw)
            local = (idx - start).clamp(0, hw - 1)
            tok = torch.gather(f.flatten(2), 2, local[:, None, :].expand(-1, f.shape[1], -1))  # (N, D, K)
            tok = tok.transpose(1, 2)
            out = tok * inside[..., None] if out is None else torch.where(inside[..., None], tok, out)
            start += hw
        return out

    # ------------------------------------------------------------------- FRM
    def lam(self, cls_tokens: torch.Tensor, reg_tokens: torch.Tensor) -> torch.Tensor:
        """The gate lambda: (N,) = sigmoid(W [mean_k F_reg ; mean_k F_cls]), or the fixed value."""
        if self.gate is None:
            return cls_tokens.new_full((cls_tokens.shape[0],), self.fixed_gate)
        f = torch.cat([reg_tokens.mean(dim=1), cls_tokens.mean(dim=1)], dim=1)
        return torch.sigmoid(self.gate(f))[:, 0]

    def refine(self, cls_tokens: torch.Tensor, reg_tokens: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            cls_tokens: (N, K, D_cls); reg_tokens: (N, K, D_reg).
        Returns:
            refined objectness logits (N, K), lambda (N,).
        """
        scale = 1.0 / math.sqrt(self.key_dim)
        a_reg = torch.softmax(self.q_reg(reg_tokens) @ self.k_reg(reg_tokens).transpose(1, 2) * scale, dim=-1)
        a_cls = torch.softmax(self.q_cls(cls_tokens) @ self.k_cls(cls_tokens).transpose(1, 2) * scale, dim=-1)
        lam = self.lam(cls_tokens, reg_tokens)
        attn = lam[:, None, None] * a_reg + (1 - lam[:, None, None]) * a_cls
        fused = torch.cat([reg_tokens, attn @ self.v_reg(reg_tokens)], dim=2)
        return self.pred(fused)[:, :, 0], lam

    def forward(self, obj_logits: torch.Tensor, cls_feats: torch.Tensor, reg_feats: torch.Tensor,
                valid: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """STSM then FRM.

        Args:
            obj_logits: (N, A); cls_feats: (N, A, D_cls); reg_feats: (N, A, D_reg);
            valid: optional (N, A) bool.
        Returns:
            idx (N, K) selected locations, refined logits (N, K), lambda (N,).
        """
        idx = self.select(obj_logits, valid)
        refined, lam = self.refine(self.gather(cls_feats, idx), self.gather(reg_feats, idx))
        return idx, refined, lam

    # ------------------------------------------------------ loss and inference
    def losses(self, refined: torch.Tensor, idx: torch.Tensor, foreground: torch.Tensor
               ) -> Dict[str, torch.Tensor]:
        """L_ref = lambda_ref x mean over the N x K selected tokens of BCE(refined, y_ref).

        Args:
            refined: (N, K) logits; idx: (N, K) their locations;
            foreground: (N, A) bool or {0, 1}: each location's foreground label (see ``target``).
        """
        y = torch.gather(foreground.to(refined.dtype), 1, idx)
        return {"loss_ref": self.loss_weight * F.binary_cross_entropy_with_logits(refined, y)}

    def apply(self, obj_logits: torch.Tensor, idx: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        """Objectness logits (N, A) for inference: the refined logits of the K tokens replace
        theirs; with ``inference="tokens_only"`` every other location gets -inf."""
        base = obj_logits if self.inference_mode == "replace" else torch.full_like(obj_logits, float("-inf"))
        return base.scatter(1, idx, refined.to(obj_logits.dtype))
