"""Small building blocks shared by the DETR-style modules (RT-DETR's query selection, decoder
and the Better Sampling weight generator)."""
import math
from typing import Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MLP", "inverse_sigmoid", "bias_init_with_prob"]


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with x clipped to [0, 1] and both terms to at least ``eps`` (the
    reference's definition, so that converted weights give the same refinements)."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def bias_init_with_prob(prior_prob: float) -> float:
    """The bias whose sigmoid is ``prior_prob`` (-4.595 for 0.01)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (none after the last).

    Attribute names (``layers.<i>``) follow the DETR family, so converted checkpoints load
    without renaming.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, return_hidden: bool = False
                ) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            x: (..., input_dim).
            return_hidden: also return the input of the last layer, (..., hidden_dim): the
                regression feature H_reg that Better Sampling's reweighting reads.
        Returns:
            (..., output_dim), or (output, hidden).
        """
        hidden = x
        for layer in self.layers[:-1]:
            hidden = F.relu(layer(hidden))
        out = self.layers[-1](hidden)
        return (out, hidden) if return_hidden else out
