"""SCINet (Liu et al., NeurIPS 2022, "SCINet: Time Series Modeling and Forecasting with
Sample Convolution and Interaction"), as a multi-horizon up/down classifier."""

from __future__ import annotations

import functools
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    dropout,
    price_news_inputs,
)
from lightquant.models.needs import DataNeeds


class ConvPairs(nn.Module):
    """``groups`` independent copies of the paper's phi/psi/rho/eta modules, run as one batched
    matrix product per convolution: (G, B, L, C) -> (G, B, L, C), values in (-1, 1).

    Each copy is the reference code's module: replication pad by (k-1)/2 + 1 per side, Conv1d(k)
    to ``hidden_size`` channels (L+2 long), LeakyReLU, dropout, Conv1d(3) back to C (L long), tanh.
    A convolution here is its windows (``unfold``) times the kernel: with a level's 2 x 2**level
    modules stacked, the tree runs 2 products per module group instead of 2 tiny Conv1d calls per
    module (SCINet was dispatch-bound: a few thousand operator calls per step, BENCHMARKS.md
    section 10). ``w1[g]`` is a Conv1d weight (H, C, k) laid out for the windows, (k*C, H) =
    ``weight.permute(2, 1, 0).reshape(k*C, H)``, initialised as nn.Conv1d does (uniform +-1/sqrt(fan_in)).
    """

    def __init__(self, groups: int, channels: int, hidden_size: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.kernel_size, self.pad, self.dropout = kernel_size, (kernel_size - 1) // 2 + 1, dropout
        b1, b2 = 1 / math.sqrt(channels * kernel_size), 1 / math.sqrt(hidden_size * 3)
        self.w1 = nn.Parameter(torch.empty(groups, channels * kernel_size, hidden_size).uniform_(-b1, b1))
        self.b1 = nn.Parameter(torch.empty(groups, 1, hidden_size).uniform_(-b1, b1))
        self.w2 = nn.Parameter(torch.empty(groups, hidden_size * 3, channels).uniform_(-b2, b2))
        self.b2 = nn.Parameter(torch.empty(groups, 1, channels).uniform_(-b2, b2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b, n, c = x.shape
        first, second = _windows(n, self.kernel_size, self.pad, x.device)
        # one gather builds the replication-padded windows (no artificial edge at the window's ends),
        # already contiguous as (G, B*(L+2), k*C): no pad, unfold or copy, and a cheap backward
        h = torch.baddbmm(self.b1, x.index_select(2, first).view(g, b * (n + 2), -1), self.w1)
        h = dropout(F.leaky_relu(h, 0.01), self.dropout, self.training).view(g, b, n + 2, -1)
        out = torch.baddbmm(self.b2, h.index_select(2, second).view(g, b * n, -1), self.w2)
        return torch.tanh(out).view(g, b, n, c)  # tanh bounds the exp() scaling to [1/e, e]: stable, also in bf16


@functools.cache
def _windows(n: int, kernel_size: int, pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Day indices of both convolutions' windows over an ``n``-day input, window after window:
    (n+2) x k for the first, replication padding included (an index clamped to the first/last day),
    and n x 3 for the second over the first's n+2 outputs."""
    first = (torch.arange(n + 2)[:, None] + torch.arange(kernel_size) - pad).clamp_(0, n - 1)
    second = torch.arange(n)[:, None] + torch.arange(3)
    return first.flatten().to(device), second.flatten().to(device)


class SCITree(nn.Module):
    """A binary tree of SCI-Blocks ``levels`` deep, computed level by level: level l's 2**l blocks
    at once. A block splits its input into even/odd days and learns interactively (paper eq. 1-2):
    odd_s = odd * exp(phi(even)), even_s = even * exp(psi(odd)),
    even' = even_s + eta(odd_s), odd' = odd_s - rho(even_s);
    block b's even' and odd' go to blocks 2b and 2b+1 of the next level. The leaves' outputs are
    zipped back (even, odd, even, ...), so the result is in the input's day order."""

    def __init__(self, levels: int, channels: int, hidden_size: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        # per level: groups [phi_0, psi_0, phi_1, psi_1, ...] and [eta_0, rho_0, eta_1, rho_1, ...]
        self.interact = nn.ModuleList(ConvPairs(2 * 2**lv, channels, hidden_size, kernel_size, dropout)
                                      for lv in range(levels))
        self.update = nn.ModuleList(ConvPairs(2 * 2**lv, channels, hidden_size, kernel_size, dropout)
                                    for lv in range(levels))
        self.register_load_state_dict_pre_hook(_from_per_block_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, L, C), L a multiple of 2**levels -> (B, L, C)."""
        z = x[None]  # (N blocks, B, L, C)
        for interact, update in zip(self.interact, self.update):
            n, b, length, c = z.shape
            m = length // 2
            even, odd = z[:, :, ::2], z[:, :, 1::2]  # days 0, 2, ... and 1, 3, ...
            a = interact(torch.stack([even, odd], 1).reshape(2 * n, b, m, c)).view(n, 2, b, m, c)
            odd_s, even_s = odd * torch.exp(a[:, 0]), even * torch.exp(a[:, 1])
            u = update(torch.stack([odd_s, even_s], 1).reshape(2 * n, b, m, c)).view(n, 2, b, m, c)
            z = torch.stack([even_s + u[:, 0], odd_s - u[:, 1]], 1).reshape(2 * n, b, m, c)
        while z.shape[0] > 1:  # zip siblings 2p, 2p+1 into parent p: e0, o0, e1, o1, ...
            n, b, m, c = z.shape
            z = z.view(n // 2, 2, b, m, c).permute(0, 2, 3, 1, 4).reshape(n // 2, b, 2 * m, c)
        return z[0]


def _from_per_block_keys(module, state_dict, prefix, *args) -> None:
    """Weights saved before the tree was batched (one Sequential per module, ``even``/``odd``
    sub-trees: ``tree.odd.even.block.phi.1.weight``) load into the batched layout."""
    old = [k for k in state_dict if k.startswith(prefix) and ".block." in k]
    if not old:
        return
    entries = {k[len(prefix):]: state_dict.pop(k) for k in old}
    levels = 1 + max(k.count(".") - 3 for k in entries)
    for lv in range(levels):
        for blk in range(2**lv):
            path = "".join(("odd." if blk >> (lv - 1 - i) & 1 else "even.") for i in range(lv)) + "block."
            for phase, names in (("interact", ("phi", "psi")), ("update", ("eta", "rho"))):
                for j, name in enumerate(names):
                    g = 2 * blk + j
                    for conv, (w, bias) in (("1", ("w1", "b1")), ("4", ("w2", "b2"))):
                        weight = entries[f"{path}{name}.{conv}.weight"]  # (out, in, k)
                        key = f"{prefix}{phase}.{lv}."
                        state_dict.setdefault(key + w, [None] * 2 ** (lv + 1))[g] = weight.permute(2, 1, 0).flatten(0, 1)
                        state_dict.setdefault(key + bias, [None] * 2 ** (lv + 1))[g] = entries[f"{path}{name}.{conv}.bias"][None]
    for k in [k for k in state_dict if k.startswith(prefix) and isinstance(state_dict[k], list)]:
        state_dict[k] = torch.stack(state_dict[k])


class SCINet(nn.Module):
    """SCI-Block tree over the window + residual -> projection over time -> per-horizon head.

    Channels C = ``input_size`` (+ ``news_size``): like the paper, the tree works on the raw
    input variables. ``forward`` returns logits (B,) with ``pred_len=1`` (a drop-in
    next-day model), else (B, pred_len) with column h-1 = movement of day t+h-1 -> t+h.
    """

    needs = DataNeeds(horizons="pred_len")  # labels for days t+1 .. t+pred_len

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
        h = self.tree(x) + x  # (B, L, C), residual to the input
        # the day axis mapped to horizons, (H, L) @ (B, L, C) -> (B, H, C): the 1x1 Conv1d's product,
        # without a convolution call (a tenth of SCINet's step went to it and its backward)
        p = torch.matmul(self.projection.weight.squeeze(-1), h)
        logits = (p * self.head_weight).sum(-1) + self.head_bias  # (B, H)
        return logits.squeeze(-1) if self.pred_len == 1 else logits  # (B,) or (B, H)
