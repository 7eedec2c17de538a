"""DTML (Yoo et al., KDD 2021, "Accurate Multivariate Stock Movement Prediction via
Data-Axis Transformer with Multi-Level Contexts").

Unlike the per-stock models, DTML reads date items (``batch_layout = "date"``): one item is
one date with the S stocks trading that day, so its attention compares stocks on the same day.
"""

from __future__ import annotations

import torch
from torch import nn

from lightquant.batch import Batch
from lightquant.models.layers import (
    Dropout,
    TemporalAttention,
    check_non_negative_float,
    check_non_negative_int,
    check_positive_int,
    price_news_inputs,
)
from lightquant.models.needs import DataNeeds


class AttentiveContext(nn.Module):
    """Attentive LSTM of one sequence (paper sec. 4.1): tanh(Linear) feature transformation ->
    LSTM over the T days -> temporal attention -> normalization (LayerNorm; DTML adds the
    paper's per-stock scale and shift on top, keyed by ``batch.stock``)."""

    def __init__(self, input_size: int, hidden_size: int, attention_size: int) -> None:
        super().__init__()
        self.transform = nn.Linear(input_size, hidden_size)
        self.rnn = nn.LSTM(hidden_size, hidden_size, batch_first=True)
        self.attention = TemporalAttention(hidden_size, attention_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, T, F) -> normalized context (N, H)."""
        h, _ = self.rnn(torch.tanh(self.transform(x)))  # (N, T, H)
        c, _ = self.attention(h)  # (N, H) attention-weighted sum of the hidden states
        return self.norm(c)


class DataAxisBlock(nn.Module):
    """One data-axis transformer layer (paper sec. 4.3): self-attention across the stocks of a
    date, residual + layer norm, then the nonlinear transformation tanh(z + MLP(z)), MLP 4x wide."""

    def __init__(self, hidden_size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden_size, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(hidden_size)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, 4 * hidden_size),
            nn.ReLU(),
            Dropout(dropout),
            nn.Linear(4 * hidden_size, hidden_size),
        )
        self.dropout = Dropout(dropout)

    def forward(self, h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """h: (B, S, H), pad: (B, S) bool True = padding slot (never attended to) -> (B, S, H)."""
        s, _ = self.attn(h, h, h, key_padding_mask=pad, need_weights=False)  # (B, S, H)
        z = self.norm(h + self.dropout(s))
        return torch.tanh(z + self.dropout(self.mlp(z)))


class DTML(nn.Module):
    """Stock contexts (B, S, H) + beta * market context (B, 1, H) -> ``layers`` data-axis
    transformer blocks across the S stocks -> Linear -> logits (B, S).

    ``x`` (B, S, T, F) and ``market`` (B, T, F) each go through their own attentive LSTM.
    ``y_mask`` False marks padding slots: their inputs are zeroed and they are masked out as
    attention keys, so they never change real stocks' outputs (their own logits are junk
    the engine's masked loss ignores). ``news_size > 0`` (``use_news=true``) appends each
    stock-day's mean text embedding to its price features (not to the market's).
    ``num_stocks > 0`` (the dataset's stock count; filled in from the data when the config
    leaves it null) gives each stock its own context scale and shift.
    """

    needs = DataNeeds(layout="date", from_data=("num_stocks",))  # date items: B dates x S stocks
    batch_layout = needs.layout

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        attention_size: int = 64,
        heads: int = 4,
        layers: int = 1,
        dropout: float = 0.1,
        beta: float = 0.1,
        news_size: int = 0,
        num_stocks: int = 0,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        check_positive_int("hidden_size", hidden_size)
        check_positive_int("attention_size", attention_size)
        check_positive_int("heads", heads)
        check_positive_int("layers", layers)
        if hidden_size % heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by heads ({heads})")
        dropout = check_non_negative_float("dropout", dropout, below_one=True)
        self.beta = check_non_negative_float("beta", beta)
        self.news_size = check_non_negative_int("news_size", news_size)
        self.stock_context = AttentiveContext(input_size + news_size, hidden_size, attention_size)
        self.market_context = AttentiveContext(input_size, hidden_size, attention_size)
        self.blocks = nn.ModuleList(DataAxisBlock(hidden_size, heads, dropout) for _ in range(layers))
        self.fc = nn.Linear(hidden_size, 1)
        # Context normalization (paper eq. 4): a learnable scale and shift per stock. It is
        # also what lets the attention tell stocks apart, e.g. learn that one stock follows
        # another; 0 = one shared scale/shift (the LayerNorm's own).
        self.num_stocks = check_non_negative_int("num_stocks", num_stocks)
        if num_stocks:
            self.stock_scale = nn.Embedding(num_stocks, hidden_size)
            self.stock_shift = nn.Embedding(num_stocks, hidden_size)
            nn.init.ones_(self.stock_scale.weight)
            nn.init.zeros_(self.stock_shift.weight)

    def forward(self, batch: Batch) -> torch.Tensor:
        if batch.x.dim() != 4:
            raise ValueError(f"DTML needs date items with x of shape (B, S, T, F), got {tuple(batch.x.shape)}")
        if batch.market is None:
            raise ValueError("DTML needs batch.market (B, T, F): build batches with the date layout")
        b, s, t, _ = batch.x.shape
        if batch.market.shape != (b, t, self.input_size):
            raise ValueError(f"batch.market has shape {tuple(batch.market.shape)}, expected {(b, t, self.input_size)}")
        valid = batch.y_mask if batch.y_mask is not None else torch.ones(b, s, dtype=torch.bool, device=batch.x.device)
        x = price_news_inputs(batch, self.news_size)  # (B, S, T, F[+E])
        # zero padding slots: their features may be anything (even NaN) and must not leak
        x = x.masked_fill(~valid[..., None, None], 0.0)
        c = self.stock_context(x.reshape(b * s, t, -1)).view(b, s, -1)  # (B, S, H)
        if self.num_stocks:
            if int(batch.stock.max()) >= self.num_stocks:
                raise ValueError(f"stock id {int(batch.stock.max())} >= num_stocks={self.num_stocks}")
            c = c * self.stock_scale(batch.stock) + self.stock_shift(batch.stock)  # (B, S, H)
        m = self.market_context(batch.market)  # (B, H)
        h = c + self.beta * m.unsqueeze(1)  # multi-level context (B, S, H)
        # an all-padding item would mask every key (softmax over nothing -> NaN): let its
        # slots attend to each other instead; its outputs are all padding anyway
        pad = ~valid & valid.any(dim=1, keepdim=True)  # (B, S)
        for block in self.blocks:
            h = block(h, pad)
        return self.fc(h).squeeze(-1)  # (B, S)
