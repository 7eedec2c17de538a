"""The one batch type every model accepts.

It lives at the package top so that models (which import nothing from data or
engine) and the data layer can both name it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    """A batch of samples; tensors are batch-first throughout.

    Two layouts share this type. Per-stock samples (every model but DTML), ``...`` = ``B``:
    each item is one stock's window ending at its day t. Date items (cross-sectional
    models, DTML), ``...`` = ``B, S``: each item is one date t with S stocks trading that
    day (``y_mask`` marks padding slots), so attention across stocks compares the same day.

    x:         (..., T, F) float price features of the ``T = look_back_window`` days ending at t
    y:         (...,)    float label, 1.0 = up from day t to day t+1; with ``H`` horizons
                         (SCINet) (B, H): the movement of day t+h-1 -> t+h, column 0 = t+1
    y_mask:    like ``y``, bool; None = every entry is a real label (padding stocks and
               horizons beyond the data or the split are False and must not enter a loss)
    stock:     (...,)    long stock index into ``MarketData.stocks``
    date:      (...,)    long index of day t into ``MarketData.dates``
    row:       (...,)    long row of day t in the flat stock-day table (news, predictions)
    y_hist:    (..., T-1) float movements of the window's earlier days (day j -> j+1 for
                         j < T-1, all known at t): auxiliary targets (StockNet); never the label
    market:    (B, T, F) float market context of the window's days: the equal-weighted mean
                         of all stocks' features that day (DTML)
    news:      (..., T, K, E) float embeddings of up to K texts per window day, or None
    news_mask: (..., T, K) bool, True where ``news`` holds a real text, or None
    """

    x: torch.Tensor
    y: torch.Tensor
    stock: torch.Tensor
    date: torch.Tensor
    row: torch.Tensor
    y_mask: torch.Tensor | None = None
    y_hist: torch.Tensor | None = None
    market: torch.Tensor | None = None
    news: torch.Tensor | None = None
    news_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {}
        for f in fields(self):
            v = getattr(self, f.name)
            moved[f.name] = v.to(device, non_blocking=non_blocking) if v is not None else None
        return replace(self, **moved)

    def __len__(self) -> int:
        return self.y.shape[0]
