"""SCINet (Liu et al., NeurIPS 2022, "SCINet: Time Series Modeling and Forecasting with
Sample Convolution and Interaction"), as a multi-horizon up/down classifier."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    price_news_inputs,
)


def _conv_module(channels: int, hidden_size: int, kernel_size: int, dropout: float) -> nn.Sequential:
    """The paper's phi/psi/rho/eta: (B, C, L) -> (B, C, L), values in (-1, 1).

    As in the reference code: replication pad by (k-1)/2 + 1 per side, Conv1d(k) to
    ``hidden_size`` channels (L+2 long), LeakyReLU, dropout, Conv1d(3) back to C (L long), tanh.
    """
    pad = (kernel_size - 1) // 2 + 1
    return nn.Sequential(
        nn.ReplicationPad1d(pad),  # replication, not zeros: no artificial edge at the window's ends
        nn.Conv1d(channels, hidden_size, kernel_size),
        nn.LeakyReLU(0.01),
        nn.Dropout(dropout),
        nn.Conv1d(hidden_size, channels, 3),
        nn.Tanh(),  # bounds the exp() scaling below to [1/e, e]: stable, also in bf16
    )


class SCIBlock(nn.Module):
    """Split into even/odd days, then interactive learning (paper eq. 1-2):
    odd_s = odd * exp(phi(even)), even_s = even * exp(psi(odd)),
    even' = even_s + eta(odd_s), odd' = odd_s - rho(even_s)."""

    def __init__(self, channels: int, hidden_size: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.phi, self.psi, self.rho, self.eta = (
            _conv_module(channels, hidden_size, kernel_size, dropout) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, L) with L even -> (even', odd'), each (B, C, L/2)."""
        even, odd = x[..., ::2], x[..., 1::2]  # days 0, 2, ... and 1, 3, ...
        odd_s = odd * torch.exp(self.phi(even))
        even_s = even * torch.exp(self.psi(odd))
        return even_s + self.eta(odd_s), odd_s - self.rho(even_s)


class SCITree(nn.Module):
    """A binary tree of SCI-Blocks ``levels`` deep; the leaves' outputs are zipped back
    (even, odd, even, ...) so the result is in the input's day order."""

    def __init__(self, levels: int, channels: int, hidden_size: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.block = SCIBlock(channels, hidden_size, kernel_size, dropout)
        self.even = SCITree(levels - 1, channels, hidden_size, kernel_size, dropout) if levels > 1 else None
        self.odd = SCITree(levels - 1, channels, hidden_size, kernel_size, dropout) if levels > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, L), L a multiple of 2**levels -> (B, C, L)."""
        even, odd = self.block(x)  # (B, C, L/2) each
        if self.even is not None:
            even, odd = self.even(even), self.odd(odd)
        # zip: stack on a new last axis and flatten -> e0, o0, e1, o1, ... (day order restored)
        return torch.stack([even, odd], dim=-1).flatten(-2)  # (B, C, L)


class SCINet(nn.Module):
    """SCI-Block tree over the window + residual -> projection over time -> per-horizon head.

    Channels C = ``input_size`` (+ ``news_size``): like the paper, the tree works on the raw
    input variables. ``forward`` returns logits (B,) with ``pred_len=1`` (a drop-in
    next-day model), else (B, pred_len) with column h-1 = movement of day t+h-1 -> t+h.
    """

    def __init__(
        self,
        input_size: int,
        seq_len: int,
        pred_len: int = 1,
        SCINet_Layers: int = 2,  # named like the config key of the research code
        hidden_size: int = 64,
        kernel_size: int = 5,
        dropout: float = 0.25,
        news_size: int = 0,
    ) -> None:
        super().__init__()
        check_positive_int("input_size", input_size)
        self.seq_len = check_positive_int("seq_len", seq_len)
        self.pred_len = check_positive_int("pred_len", pred_len)
        check_positive_int("SCINet_Layers", SCINet_Layers)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (symmetric replication padding), got {kernel_size}")
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        self.news_size = check_non_negative_int("news_size", news_size)
        channels = input_size + news_size

        # each tree level halves the sequence, so it needs a multiple of 2**levels days
        unit = 2**SCINet_Layers
        self.padded_len = math.ceil(seq_len / unit) * unit
        if self.padded_len != seq_len:
            warnings.warn(
                f"SCINet: seq_len={seq_len} is not a multiple of 2**SCINet_Layers={unit}; each window is "
                f"left-padded with copies of its first day to {self.padded_len} days. seq_len values that "
                f"need no padding: multiples of {unit} ({unit}, {2 * unit}, {3 * unit}, ...)",
                stacklevel=2,
            )
        self.tree = SCITree(SCINet_Layers, channels, hidden_size, kernel_size, dropout)
        # the paper's projection: Conv1d over the time axis (days as channels), per feature
        self.projection = nn.Conv1d(self.padded_len, pred_len, kernel_size=1, bias=False)
        # per-horizon head: horizon h's logit = w_h . p_h + b_h (own weights and base rate)
        bound = 1.0 / math.sqrt(channels)  # nn.Linear's default init
        self.head_weight = nn.Parameter(torch.empty(pred_len, channels).uniform_(-bound, bound))
        self.head_bias = nn.Parameter(torch.empty(pred_len).uniform_(-bound, bound))

    def forward(self, batch: Batch) -> torch.Tensor:
        x = price_news_inputs(batch, self.news_size)  # (B, T, C)
        if x.shape[1] != self.seq_len:
            raise ValueError(
                f"SCINet was built with seq_len={self.seq_len} but the batch window has {x.shape[1]} days: "
                "set seq_len to the dataset's look_back_window"
            )
        pad = self.padded_len - self.seq_len
        if pad:
            x = torch.cat([x[:, :1].expand(-1, pad, -1), x], dim=1)  # (B, L, C), L = padded_len
        h = self.tree(x.transpose(1, 2)).transpose(1, 2) + x  # (B, L, C), residual to the input
        p = self.projection(h)  # (B, L, C) -> (B, H, C): day axis mapped to horizons
        logits = (p * self.head_weight).sum(-1) + self.head_bias  # (B, H)
        return logits.squeeze(-1) if self.pred_len == 1 else logits  # (B,) or (B, H)
