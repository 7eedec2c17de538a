"""Sanity checks between the panel and the tensors: what parsing cannot see in one file.

- ``check_jumps``: a close-to-close move beyond ``max_jump`` (x3 up or down by default) on one
  trading day is almost always an unadjusted split or a corrupt row, and it squeezes every other
  stock's z-scored features; ``on_jump`` says what to do: ``warn`` (name each, keep the data),
  ``error`` (stop), or ``adjust`` (rescale the stock's earlier prices and volumes by the jump, as
  a split adjustment would).
- ``check_statistics``: normalisation statistics that are finite and not astronomically large.
- ``check_classes``: a train or val split whose labels are all one class (thresholds that leave one
  class) makes accuracy meaningless.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from lightquant.data.panel import Panel
from lightquant.errors import ConfigError, DataError

log = logging.getLogger(__name__)



def find_jumps(panel: Panel, max_jump: float) -> list[tuple[int, int, float]]:
    """(stock, day index, close / previous close) of every move beyond ``max_jump`` either way."""
    close = panel.prices["close"]
    out = []
    for s in range(close.shape[0]):
        days = np.flatnonzero(np.isfinite(close[s]))
        if len(days) < 2:
            continue
        ratio = close[s, days[1:]] / close[s, days[:-1]]
        for k in np.flatnonzero((ratio > max_jump) | (ratio < 1.0 / max_jump)):
            out.append((s, int(days[k + 1]), float(ratio[k])))
    return out


def check_jumps(panel: Panel, max_jump: float | None, on_jump: str) -> Panel:
    """``on_jump`` (warn | error | adjust; checked with build_market_data's arguments) on the moves beyond ``max_jump``."""
    if max_jump is None:
        return panel
    if not max_jump > 1:
        raise ConfigError(f"dataset.max_jump={max_jump!r} must be > 1 (a ratio, e.g. 3), or null to skip the check")
    jumps = find_jumps(panel, max_jump)
    if not jumps:
        return panel
    listed = "; ".join(f"{panel.stocks[s]} on {panel.dates[d]} (x{r:.3g})" for s, d, r in jumps[:5])
    more = f" and {len(jumps) - 5} more" if len(jumps) > 5 else ""
    what = (f"{len(jumps)} one-day close move(s) beyond x{max_jump:g} (likely unadjusted splits or corrupt rows): "
            f"{listed}{more}")
    if on_jump == "error":
        raise DataError(f"{what}. Fix the files, or set dataset.on_jump=adjust (rescale the earlier prices) or "
                        "dataset.on_jump=warn (keep them), or raise dataset.max_jump")
    if on_jump == "warn":
        log.warning("%s; kept as they are (dataset.on_jump=adjust rescales the earlier prices, =error stops)", what)
        return panel
    prices = {k: v.copy() for k, v in panel.prices.items()}
    adjusted_given = ~np.isclose(prices["adj_close"], prices["close"], equal_nan=True)
    for s, d, r in jumps:  # the days before the jump, scaled onto its level
        for f in ("open", "high", "low", "close"):
            prices[f][s, :d] *= r
        if not adjusted_given[s].any():  # no separate adjusted series: it is the close, adjust it too
            prices["adj_close"][s, :d] *= r
        prices["volume"][s, :d] /= r
    log.warning("%s; earlier prices rescaled (dataset.on_jump=adjust)", what)
    return replace(panel, prices=prices)


def check_statistics(mean: np.ndarray, std: np.ndarray, names: list[str]) -> None:
    bad = [n for n, m, s in zip(names, mean, std) if not (np.isfinite(m) and np.isfinite(s) and abs(m) < 1e6 and s < 1e6)]
    if bad:
        raise DataError(f"normalisation statistics of feature(s) {bad} are not finite or astronomically large: some "
                        "price file holds extreme values; look for corrupt rows or unadjusted splits "
                        "(dataset.on_jump=error names them)")


#: below this many labels a split can be one class by chance (a hand-made test market), not by its thresholds
MIN_LABELS_FOR_CLASS_CHECK = 20


def check_classes(splits: dict, thresholds: tuple[float, float]) -> None:
    for name in ("train", "val"):
        y = splits[name].y
        if len(y) >= MIN_LABELS_FOR_CLASS_CHECK and (bool((y == 1).all()) or bool((y == 0).all())):
            cls = "up" if bool((y == 1).all()) else "down"
            raise ConfigError(f"every {name} label is {cls}: dataset.label.up_threshold={thresholds[0]} / "
                              f"down_threshold={thresholds[1]} leave one class; move them towards 0")
