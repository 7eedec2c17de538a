"""The panel: what every data source produces, before anything is derived from it.

Sources (synthetic, CSMD, ...) are adapters that turn files or a generator into
one ``Panel``; features, labels, splits and windows are computed from it by code
shared by all sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Price fields every panel carries, in this order.
PRICE_FIELDS = ("open", "high", "low", "close", "adj_close", "volume")


@dataclass
class Panel:
    """Stocks x trading days x fields, plus dated news texts.

    stocks:  S stock names
    dates:   D sorted trading days (``datetime64[D]``), the union of all stocks' days
    prices:  field -> (S, D) float64 array; NaN where the stock did not trade
             (not yet listed, suspended, delisted)
    news_stock / news_date / news_text: one entry per news item; ``news_date`` is the
             publication date as given by the source (it may be a weekend); the shared
             pipeline attaches it to a trading day, so sources need not.
    """

    stocks: list[str]
    dates: np.ndarray
    prices: dict[str, np.ndarray]
    news_stock: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    news_date: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype="datetime64[D]"))
    news_text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        shape = (len(self.stocks), len(self.dates))
        missing = [f for f in PRICE_FIELDS if f not in self.prices]
        if missing:
            raise ValueError(f"Panel is missing price fields {missing}; sources must provide {PRICE_FIELDS}")
        for name, arr in self.prices.items():
            if arr.shape != shape:
                raise ValueError(f"Panel field {name!r} has shape {arr.shape}, expected (stocks, dates) = {shape}")
        if not (len(self.news_stock) == len(self.news_date) == len(self.news_text)):
            raise ValueError("Panel news arrays must have equal length")

    def without_news(self) -> "Panel":
        """The same prices with no texts (what a price-only run needs)."""
        return Panel(stocks=self.stocks, dates=self.dates, prices=self.prices)

    def until(self, day: np.datetime64) -> "Panel":
        """The panel as known at ``day``'s close: no trading day and no text dated after it."""
        day = np.datetime64(day, "D")
        k = int(np.searchsorted(self.dates, day, side="right"))
        keep = self.news_date.astype("datetime64[D]") <= day
        return Panel(stocks=self.stocks, dates=self.dates[:k], prices={f: v[:, :k] for f, v in self.prices.items()},
                     news_stock=self.news_stock[keep], news_date=self.news_date[keep],
                     news_text=[t for t, k_ in zip(self.news_text, keep.tolist()) if k_])

    @property
    def traded(self) -> np.ndarray:
        """(S, D) bool: the stock has a price bar that day."""
        return np.isfinite(self.prices["close"])
