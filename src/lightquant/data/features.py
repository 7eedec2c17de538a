"""Scale-free per-day features and next-day returns on the flat stock-day table.

Raw prices differ ~1000x across stocks, so every feature is a ratio: to the stock's previous
*trading* day (suspended days are skipped, not zero-filled), to the same day's close, or to
the mean of the last k trading days. Each function sees only days <= t of one stock:
features cannot look ahead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.errors import ConfigError


@dataclass
class Rows:
    """The panel flattened to one row per traded stock-day, sorted by (stock, day).

    Rows of one stock are contiguous, so a window of T days is T consecutive rows.
    """

    stock: np.ndarray  # (R,) int64
    day: np.ndarray  # (R,) int64 index into Panel.dates
    prices: dict[str, np.ndarray]  # field -> (R,) float64
    prev: np.ndarray  # (R,) int64 row of the previous trading day of the same stock, -1 for the first

    @classmethod
    def from_panel(cls, panel: Panel) -> "Rows":
        stock, day = np.nonzero(panel.traded)  # row-major: sorted by stock, then day
        prices = {f: panel.prices[f][stock, day] for f in PRICE_FIELDS}
        prev = np.arange(len(stock)) - 1
        first = np.ones(len(stock), dtype=bool)
        first[1:] = stock[1:] != stock[:-1]
        prev[first] = -1
        return cls(stock.astype(np.int64), day.astype(np.int64), prices, prev)

    def __len__(self) -> int:
        return len(self.stock)

    def previous(self, field: str) -> np.ndarray:
        """Field on the previous trading day of the same stock (NaN for a stock's first row)."""
        out = np.full(len(self), np.nan)
        has = self.prev >= 0
        out[has] = self.prices[field][self.prev[has]]
        return out


def _rel(field: str) -> Callable[[Rows], np.ndarray]:
    def f(rows: Rows) -> np.ndarray:
        return rows.prices[field] / rows.previous("close") - 1.0

    f.__doc__ = f"{field} relative to the previous close, minus 1"
    return f


def _volume(rows: Rows) -> np.ndarray:
    """log volume change; log1p keeps zero-volume days finite."""
    return np.log1p(rows.prices["volume"]) - np.log1p(rows.previous("volume"))


def _adj_return(rows: Rows) -> np.ndarray:
    """adjusted close-to-close return (dividends and splits removed)."""
    return rows.prices["adj_close"] / rows.previous("adj_close") - 1.0


def _to_close(field: str) -> Callable[[Rows], np.ndarray]:
    def f(rows: Rows) -> np.ndarray:
        return rows.prices[field] / rows.prices["close"] - 1.0

    f.__doc__ = f"{field} relative to the same day's close, minus 1 (Adv-ALSTM's c_{field})"
    return f


def _moving_average(k: int) -> Callable[[Rows], np.ndarray]:
    def f(rows: Rows) -> np.ndarray:
        # rows of a stock are contiguous, so the last k trading days are rows r-k+1..r. The sum
        # runs over the k lags (not a cumulative sum over the whole table) so each row's value
        # depends on its own window only, bit for bit, whatever the rows before it.
        adj = rows.prices["adj_close"]
        r = np.arange(len(rows))
        first = np.maximum.accumulate(np.where(rows.prev < 0, r, 0))  # each row's stock's first row
        end = r[r - first >= k - 1]  # rows with k trading days of their own stock
        total = sum(adj[end - lag] for lag in range(k))  # a NaN price voids the windows that contain it
        out = np.full(len(rows), np.nan)
        out[end] = total / k / adj[end] - 1.0
        return out

    f.__doc__ = f"mean adjusted close of the last {k} trading days / today's adjusted close - 1 (Adv-ALSTM)"
    return f


def _range(rows: Rows) -> np.ndarray:
    """intraday range high/low - 1, a volatility proxy."""
    return rows.prices["high"] / rows.prices["low"] - 1.0


FEATURES: dict[str, Callable[[Rows], np.ndarray]] = {
    "open": _rel("open"),
    "high": _rel("high"),
    "low": _rel("low"),
    "close": _rel("close"),
    "volume": _volume,
    "adj_close": _adj_return,
    "range": _range,
    **{f"c_{f}": _to_close(f) for f in ("open", "high", "low")},
    **{f"ma{k}": _moving_average(k) for k in (5, 10, 15, 20, 25, 30)},
}


def compute_features(rows: Rows, names: Sequence[str]) -> np.ndarray:
    """(R, F) float64; NaN where undefined (a stock's first day, missing fields)."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ConfigError(f"dataset.features: unknown feature(s) {unknown}; choose from {sorted(FEATURES)}")
    if not names:
        raise ConfigError("dataset.features is empty; give at least one of " + str(sorted(FEATURES)))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack([FEATURES[n](rows) for n in names], axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


def next_day_return(rows: Rows, price: str) -> np.ndarray:
    """(R,) return from day t to the stock's next trading day; NaN on its last day."""
    if price not in PRICE_FIELDS or price == "volume":
        raise ConfigError(f"dataset.label.price={price!r}; choose one of open, high, low, close, adj_close")
    nxt = np.full(len(rows), -1)
    has_prev = rows.prev >= 0
    nxt[rows.prev[has_prev]] = np.nonzero(has_prev)[0]
    out = np.full(len(rows), np.nan)
    has = nxt >= 0
    p = rows.prices[price]
    with np.errstate(divide="ignore", invalid="ignore"):
        out[has] = p[nxt[has]] / p[has] - 1.0
    out[~np.isfinite(out)] = np.nan
    return out
