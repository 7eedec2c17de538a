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

    x:     (B, T, F) float price features of the ``T = look_back_window`` days ending at t
    y:     (B,)      float label, 1.0 = up on day t+1
    stock: (B,)      long stock index into ``MarketData.stocks``
    date:  (B,)      long index of day t into ``MarketData.dates``
    row:   (B,)      long row of day t in the flat stock-day table (news, predictions)
    """

    x: torch.Tensor
    y: torch.Tensor
    stock: torch.Tensor
    date: torch.Tensor
    row: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return replace(
            self,
            **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)},
        )

    def __len__(self) -> int:
        return self.y.shape[0]
