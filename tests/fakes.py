"""Shared fakes for model tests: a random per-stock ``Batch`` and a parameter count."""

from __future__ import annotations

import torch

from lightquant.batch import Batch


def random_batch(b: int, t: int, f: int, k: int = 0, e: int = 0, seed: int = 0, keep: float = 0.6) -> Batch:
    """A random per-stock batch (the layout of every model but DTML): B windows of T days.

    x: (B, T, F) standard normal; y: (B,) and y_hist: (B, T-1) float 0/1, each 1 with
    probability 0.5; stock and date all zero; row = arange(B). With ``k > 0`` texts too:
    news (B, T, K, E) standard normal and news_mask (B, T, K) bool, each slot a real text
    with probability ``keep`` (independently, so some days or windows may be empty by chance);
    with ``k == 0`` news and news_mask are None (price-only).

    Everything comes from one ``torch.Generator`` seeded with ``seed``, in the order
    news_mask, x, y, y_hist, news, so equal arguments give equal batches. Tensors are fresh:
    tests may edit them in place (e.g. empty some days of ``news_mask``).
    """
    g = torch.Generator().manual_seed(seed)
    news_mask = torch.rand(b, t, k, generator=g) < keep if k > 0 else None
    x = torch.randn(b, t, f, generator=g)
    y = (torch.rand(b, generator=g) > 0.5).float()
    y_hist = (torch.rand(b, t - 1, generator=g) > 0.5).float()
    news = torch.randn(b, t, k, e, generator=g) if k > 0 else None
    zeros = torch.zeros(b, dtype=torch.long)
    return Batch(
        x=x,
        y=y,
        stock=zeros,
        date=zeros.clone(),
        row=torch.arange(b),
        y_hist=y_hist,
        news=news,
        news_mask=news_mask,
    )


def n_params(model: torch.nn.Module) -> int:
    """Number of parameter entries of ``model``."""
    return sum(p.numel() for p in model.parameters())
