"""Backtest a predictions table: does trading on ``prob_up`` make money after costs?

Input: the table of :func:`lightquant.evaluation.predictions.predict_frame` (one row per
sample: ``date`` = day t, ``stock``, ``prob_up``, ``return`` = the realised return from t's
close to the stock's next close). Positions are formed at t's close from the predictions
made at t and earn ``return``; every day is rebalanced to new target weights.

Strategies (``top_k`` stocks per day, ranked by ``prob_up``; ties broken by stock name so a
run is reproducible):

- ``long_short``: long the ``top_k`` highest, short the ``top_k`` lowest, each leg fully
  invested (weights +1/k and -1/k: gross 2, net 0), so a day's return is the mean return of
  the long names minus that of the short names. A day with fewer than 2k stocks uses
  k = n // 2 so no stock is on both sides.
- ``top_k``: long-only, weight 1/k on the ``top_k`` highest (all stocks when fewer).

Costs: ``cost_bps`` basis points per unit of turnover, turnover being sum |w_t - w_{t-1}|
over stocks (opening day 1 counts; weight drift within a day is ignored). The benchmark
is the equal-weight buy-and-hold of the same universe, approximated by the daily
equal-weight mean return of every stock present that day, without costs.

Caveat: the backtest trades the samples present. Datasets whose label drops in-between
returns (ACL18: -0.5 % .. +0.55 %) have no predictions for those stock-days, and that
selection uses the realised return, so their figures are optimistic; CSMD and the
synthetic market drop nothing.

Everything here is vectorised pandas/numpy over the whole table: no per-sample Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightquant.errors import ConfigError

STRATEGIES = ("long_short", "top_k")
PERIODS_PER_YEAR = 252
REQUIRED = ("date", "stock", "prob_up", "return")
_ZERO = 1e-12  # a standard deviation below this is "constant returns"


@dataclass
class BacktestResult:
    daily: pd.DataFrame  # index: date; gross, cost, net, benchmark, turnover, equity, benchmark_equity
    metrics: dict[str, Any]


def _ratio(num: float, den: float) -> float:
    """num / den, with the limits a zero denominator implies (+-inf, or NaN for 0/0)."""
    if den > _ZERO:
        return float(num / den)
    return float("inf") if num > 0 else float("-inf") if num < 0 else float("nan")


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall from a running peak of the equity curve, as a positive fraction (0.25 = -25 %).

    The curve starts at 1 before the first day, so a loss on day 1 is a drawdown too.
    """
    equity = np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(returns, dtype=float))])
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


def performance(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, float]:
    """Figures of one daily return series (risk-free rate 0).

    annual_return is geometric ((1 + total)^(P/n) - 1); annual_vol and sharpe use the sample
    standard deviation (ddof=1); calmar = annual_return / max_drawdown. A zero volatility or
    drawdown gives +-inf (or NaN for 0/0) rather than a huge meaningless number.
    """
    r = np.asarray(returns, dtype=float)
    n = len(r)
    if n == 0:
        return {"n_days": 0}
    growth = float(np.prod(1.0 + r))
    annual = growth ** (periods_per_year / n) - 1.0 if growth > 0 else -1.0
    std = float(r.std(ddof=1)) if n > 1 else float("nan")
    mdd = max_drawdown(r)
    return {
        "n_days": n,
        "total_return": growth - 1.0,
        "annual_return": annual,
        "annual_vol": std * np.sqrt(periods_per_year),
        "sharpe": _ratio(r.mean() * np.sqrt(periods_per_year), std) if n > 1 else float("nan"),
        "max_drawdown": mdd,
        "calmar": _ratio(annual, mdd),
        "hit_rate": float((r > 0).mean()),
    }


def information_ratio(returns: np.ndarray, benchmark: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised mean active return over tracking error (both from daily active returns)."""
    active = np.asarray(returns, dtype=float) - np.asarray(benchmark, dtype=float)
    if len(active) < 2:
        return float("nan")
    return _ratio(active.mean() * periods_per_year, active.std(ddof=1) * np.sqrt(periods_per_year))


def _check(pred: pd.DataFrame, strategy: str, top_k: int, cost_bps: float) -> None:
    missing = [c for c in REQUIRED if c not in pred.columns]
    if missing:
        raise ValueError(
            f"backtest needs columns {list(REQUIRED)}; missing {missing} (columns: {list(pred.columns)}). "
            "Use a predictions table written by LightQuant (predictions_<split>.csv)"
        )
    if strategy not in STRATEGIES:
        raise ConfigError(f"backtest.strategy={strategy!r}; use one of {list(STRATEGIES)}")
    if int(top_k) < 1:
        raise ConfigError(f"backtest.top_k={top_k} must be >= 1")
    if not cost_bps >= 0:
        raise ConfigError(f"backtest.cost_bps={cost_bps} must be >= 0")
    dup = pred.duplicated(["date", "stock"])
    if dup.any():
        first = pred.loc[dup, ["date", "stock"]].iloc[0].tolist()
        raise ValueError(f"predictions hold {int(dup.sum())} duplicate (date, stock) rows, e.g. {first}")


def target_weights(pred: pd.DataFrame, strategy: str = "long_short", top_k: int = 5) -> pd.Series:
    """Weight of each row of ``pred`` (aligned with its index) under ``strategy``."""
    df = pred.sort_values(["date", "stock"], kind="stable")  # ties in prob_up -> stock order
    g = df.groupby("date", sort=False)["prob_up"]
    n = g.transform("size").to_numpy()
    rank = g.rank(method="first", ascending=False).to_numpy()  # 1 = highest prob_up
    if strategy == "top_k":
        k = np.minimum(top_k, n)
        w = np.where(rank <= k, 1.0 / k, 0.0)
    else:
        k = np.minimum(top_k, n // 2)
        safe_k = np.maximum(k, 1)  # k = 0 (a one-stock day) trades nothing
        # The short leg is the last k of the same ranking, so it never overlaps the long one.
        w = np.where(rank <= k, 1.0 / safe_k, np.where(rank > n - k, -1.0 / safe_k, 0.0))
    return pd.Series(w, index=df.index).reindex(pred.index)


def backtest(
    pred: pd.DataFrame,
    *,
    strategy: str = "long_short",
    top_k: int = 5,
    cost_bps: float = 10.0,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> BacktestResult:
    """Daily rebalanced backtest of ``pred`` (see the module docstring for the rules)."""
    _check(pred, strategy, top_k, cost_bps)
    df = pred[list(REQUIRED)].copy()
    df["date"] = pd.to_datetime(df["date"])
    df["weight"] = target_weights(df, strategy, int(top_k))
    df["pnl"] = df["weight"] * df["return"]

    by_day = df.groupby("date")
    weights = df.pivot(index="date", columns="stock", values="weight").fillna(0.0)  # (days, stocks)
    turnover = weights.diff().abs().sum(axis=1)
    turnover.iloc[:1] = weights.iloc[:1].abs().sum(axis=1)  # day 1 opens every position
    daily = pd.DataFrame({"gross": by_day["pnl"].sum(), "turnover": turnover, "benchmark": by_day["return"].mean()})
    daily["cost"] = daily["turnover"] * (cost_bps / 1e4)
    daily["net"] = daily["gross"] - daily["cost"]
    daily["equity"] = (1.0 + daily["net"]).cumprod()
    daily["benchmark_equity"] = (1.0 + daily["benchmark"]).cumprod()

    net, bench = daily["net"].to_numpy(), daily["benchmark"].to_numpy()
    metrics: dict[str, Any] = {
        **performance(net, periods_per_year),
        "information_ratio": information_ratio(net, bench, periods_per_year),
        "turnover": float(daily["turnover"].mean()) if len(daily) else float("nan"),
        "gross_annual_return": performance(daily["gross"].to_numpy(), periods_per_year).get("annual_return"),
        "benchmark": performance(bench, periods_per_year),
        "settings": {"strategy": strategy, "top_k": int(top_k), "cost_bps": float(cost_bps),
                     "periods_per_year": int(periods_per_year)},
        "start": str(daily.index.min().date()) if len(daily) else None,
        "end": str(daily.index.max().date()) if len(daily) else None,
    }
    return BacktestResult(daily=daily, metrics=metrics)


def plot_equity(daily: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Equity curves of the strategy (after costs) and the benchmark, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(daily.index, daily["equity"], label="strategy (net of costs)")
    ax.plot(daily.index, daily["benchmark_equity"], label="equal-weight benchmark", linestyle="--")
    ax.axhline(1.0, color="grey", linewidth=0.5)
    ax.set_xlabel("position formed at close of")
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(title)
    ax.legend()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_backtest(result: BacktestResult, out_dir: str | Path, split: str, title: str = "") -> dict[str, Path]:
    """Write ``backtest_<split>.json``, ``backtest_<split>_daily.csv`` and ``equity_<split>.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": out / f"backtest_{split}.json",
        "daily": out / f"backtest_{split}_daily.csv",
        "equity": out / f"equity_{split}.png",
    }
    paths["metrics"].write_text(json.dumps(result.metrics, indent=2))
    result.daily.to_csv(paths["daily"], index_label="date")
    plot_equity(result.daily, paths["equity"], title or f"{split}: {result.metrics['settings']['strategy']}")
    return paths
