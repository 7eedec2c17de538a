"""Backtest a predictions table: does trading on ``prob_up`` make money after costs?

Input: the table of :func:`lightquant.evaluation.predictions.predict_frame` (one row per
sample: ``date`` = day t, ``stock``, ``prob_up``, ``return`` = the realised return from t's
close to the stock's next close, and ``day_return`` = the move into t's close, which says
whether t closed at a price limit). Positions are formed at t's close from the predictions
made at t and earn ``return``. Rankings are by ``prob_up``, ties broken by stock name, so a
run is reproducible.

Strategies:

- ``long_only`` (default; what an A-share account can trade): hold the ``top_k`` stocks,
  1/k of the capital each. Each day a holding that left the top k is sold and the freed
  slots buy the top-k names not held, best first, unless a rule blocks the trade:
  - T+1 and ``hold_days``: a stock bought on day t can be sold on day t + hold_days at the
    earliest (hold_days = 1 is T+1);
  - price limits (``MarketRules``): a stock that closed at its limit-up cannot be bought
    that day (nobody sells at the close), one at its limit-down cannot be sold; a stock
    with no row that day (suspended, or its label dropped) cannot be traded and earns 0;
  - a blocked sale keeps its slot, so fewer names are bought; an unfilled slot is cash.
- ``long_short``: long the ``top_k`` highest, short the ``top_k`` lowest, each leg fully
  invested (weights +1/k and -1/k: gross 2, net 0), rebalanced daily without rules. A day
  with fewer than 2k stocks uses k = n // 2 so no stock is on both sides.

Costs: ``cost_bps`` (commission and slippage) on every unit traded, buys and sells, and
``MarketRules.stamp_duty_bps`` on sells only (China's stamp duty: 0.05 % since 2023-08-28,
0.1 % before). Turnover is sum |w_t - w_{t-1}| over stocks (opening day 1 counts; weight
drift within a day is ignored). The benchmark is the equal-weight buy-and-hold of the same
universe (the daily mean return of every stock present, without costs) or an index's
daily returns.

Periods shorter than a year report their total return; annual_return and calmar are then
null rather than a compounding of a few weeks into an absurd yearly figure.

Caveat: the backtest trades the samples present. Datasets whose label drops in-between
returns (ACL18: -0.5 % .. +0.55 %) have no predictions for those stock-days, and that
selection uses the realised return, so their figures are optimistic; CSMD and the
synthetic market drop nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightquant.atomic import atomic_write_text
from lightquant.choices import STRATEGIES
from lightquant.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PERIODS_PER_YEAR = 252
REQUIRED = ("date", "stock", "prob_up", "return")
_ZERO = 1e-12  # a standard deviation below this is "constant returns"
#: a close within this of the limit is at the limit: limit prices are rounded to 0.01 CNY, so a
#: low-priced stock's limit move is a little under (or over) the nominal 10 %
LIMIT_TOLERANCE = 0.005


@dataclass
class MarketRules:
    """A market's trading rules (``dataset.market`` in the config)."""

    limit_pct: float | None = None  # daily price limit as a fraction (0.10 = +-10 %); None = no limit
    limit_pct_by_prefix: dict[str, float] = field(default_factory=dict)  # stock-name prefix -> limit ("300": 0.2)
    stamp_duty_bps: float = 0.0  # charged on sells only

    @classmethod
    def from_config(cls, market: Mapping[str, Any] | None) -> "MarketRules":
        market = dict(market or {})
        unknown = set(market) - {"limit_pct", "limit_pct_by_prefix", "stamp_duty_bps"}
        if unknown:
            raise ConfigError(f"dataset.market has unknown key(s) {sorted(unknown)}; use limit_pct, "
                              "limit_pct_by_prefix, stamp_duty_bps")
        rules = cls(market.get("limit_pct"), {str(k): float(v) for k, v in (market.get("limit_pct_by_prefix") or {}).items()},
                    float(market.get("stamp_duty_bps") or 0.0))
        for name, v in [("limit_pct", rules.limit_pct), *((f"limit_pct_by_prefix.{k}", v) for k, v in
                                                          rules.limit_pct_by_prefix.items())]:
            if v is not None and not 0 < float(v) < 1:
                raise ConfigError(f"dataset.market.{name}={v!r} must be a fraction in (0, 1), e.g. 0.10, or null")
        if not rules.stamp_duty_bps >= 0:
            raise ConfigError(f"dataset.market.stamp_duty_bps={rules.stamp_duty_bps} must be >= 0")
        return rules

    def limits(self, stocks: list[str]) -> np.ndarray:
        """(S,) limit of each stock (NaN = none): the longest matching prefix, else ``limit_pct``."""
        base = np.nan if self.limit_pct is None else float(self.limit_pct)
        out = np.full(len(stocks), base)
        for i, s in enumerate(stocks):
            hits = [p for p in self.limit_pct_by_prefix if str(s).startswith(p)]
            if hits:
                out[i] = self.limit_pct_by_prefix[max(hits, key=len)]
        return out


@dataclass
class BacktestResult:
    daily: pd.DataFrame  # index: date; gross, buy, sell, turnover, cost, net, benchmark, holdings, equity, ...
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


def performance(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> dict[str, Any]:
    """Figures of one daily return series (risk-free rate 0).

    annual_return is geometric ((1 + total)^(P/n) - 1), and null for fewer than P days (with
    ``annualised: false``); annual_vol and sharpe use the sample standard deviation (ddof=1);
    calmar = annual_return / max_drawdown. A zero volatility or drawdown gives +-inf (or NaN
    for 0/0) rather than a huge meaningless number.
    """
    r = np.asarray(returns, dtype=float)
    n = len(r)
    if n == 0:
        return {"n_days": 0}
    growth = float(np.prod(1.0 + r))
    annualised = n >= periods_per_year
    annual = (growth ** (periods_per_year / n) - 1.0 if growth > 0 else -1.0) if annualised else None
    std = float(r.std(ddof=1)) if n > 1 else float("nan")
    mdd = max_drawdown(r)
    return {
        "n_days": n,
        "total_return": growth - 1.0,
        "annual_return": annual,
        "annualised": annualised,
        "annual_vol": std * np.sqrt(periods_per_year),
        "sharpe": _ratio(r.mean() * np.sqrt(periods_per_year), std) if n > 1 else float("nan"),
        "max_drawdown": mdd,
        "calmar": _ratio(annual, mdd) if annual is not None else None,
        "hit_rate": float((r > 0).mean()),
    }


def information_ratio(returns: np.ndarray, benchmark: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Annualised mean active return over tracking error (both from daily active returns)."""
    active = np.asarray(returns, dtype=float) - np.asarray(benchmark, dtype=float)
    if len(active) < 2:
        return float("nan")
    return _ratio(active.mean() * periods_per_year, active.std(ddof=1) * np.sqrt(periods_per_year))


def _check(pred: pd.DataFrame, strategy: str, top_k: int, cost_bps: float, hold_days: int) -> None:
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
    if int(hold_days) < 1:
        raise ConfigError(f"backtest.hold_days={hold_days} must be >= 1 (1 = T+1: sell the day after buying)")
    if not cost_bps >= 0:
        raise ConfigError(f"backtest.cost_bps={cost_bps} must be >= 0")
    dup = pred.duplicated(["date", "stock"])
    if dup.any():
        first = pred.loc[dup, ["date", "stock"]].iloc[0].tolist()
        raise ValueError(f"predictions hold {int(dup.sum())} duplicate (date, stock) rows, e.g. {first}")


def long_short_weights(pred: pd.DataFrame, top_k: int = 5) -> pd.Series:
    """Weight of each row of ``pred`` (aligned with its index) under ``long_short``."""
    df = pred.sort_values(["date", "stock"], kind="stable")  # ties in prob_up -> stock order
    g = df.groupby("date", sort=False)["prob_up"]
    n = g.transform("size").to_numpy()
    rank = g.rank(method="first", ascending=False).to_numpy()  # 1 = highest prob_up
    k = np.minimum(top_k, n // 2)
    safe_k = np.maximum(k, 1)  # k = 0 (a one-stock day) trades nothing
    # The short leg is the last k of the same ranking, so it never overlaps the long one.
    w = np.where(rank <= k, 1.0 / safe_k, np.where(rank > n - k, -1.0 / safe_k, 0.0))
    return pd.Series(w, index=df.index).reindex(pred.index)


def long_only_weights(prob: pd.DataFrame, day_return: pd.DataFrame, top_k: int = 5, hold_days: int = 1,
                      rules: MarketRules | None = None) -> pd.DataFrame:
    """(days, stocks) weights of ``long_only`` from ``prob_up`` and the move into each close
    (both days x stocks, NaN where the stock has no row). One pass over the days, since a day's
    trades depend on what is held; each day is vectorised over the stocks."""
    rules = rules or MarketRules()
    p = prob.to_numpy(dtype=float)
    present = ~np.isnan(p)
    limit = rules.limits(list(prob.columns))[None, :]  # (1, S)
    move = day_return.reindex(index=prob.index, columns=prob.columns).to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):  # NaN moves or limits: never at a limit
        limit_up = move >= limit - LIMIT_TOLERANCE
        limit_down = move <= -limit + LIMIT_TOLERANCE
    # rank of each stock per day, best first; absent stocks last; ties by column (stock) order
    order = np.argsort(np.where(present, -p, np.inf), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(p.shape[1])[None, :].repeat(len(p), 0), axis=1)
    D, S = p.shape
    held = np.zeros(S, dtype=bool)
    age = np.zeros(S, dtype=np.int64)  # days (of the table) since each holding was bought
    weights = np.zeros((D, S))
    for d in range(D):
        age = np.where(held, age + 1, 0)  # a stock bought yesterday has age 1: sellable from today at T+1
        target = present[d] & (rank[d] < min(top_k, int(present[d].sum())))
        can_trade = present[d]
        sell = held & ~target & can_trade & ~limit_down[d] & (age >= hold_days)
        keep = held & ~sell
        buyable = target & ~held & can_trade & ~limit_up[d]
        slots = max(top_k - int(keep.sum()), 0)
        cand = np.flatnonzero(buyable)
        buy = cand[np.argsort(rank[d, cand], kind="stable")][:slots]
        held = keep.copy()
        held[buy] = True
        age[buy] = 0
        weights[d] = held / top_k
    return pd.DataFrame(weights, index=prob.index, columns=prob.columns)


def index_returns(path: str | Path) -> pd.Series:
    """Daily returns of an index from a CSV with Date and Close columns: the return of day t is
    close(t+1) / close(t) - 1, like a prediction's ``return``."""
    df = pd.read_csv(path)
    cols = {c.lower(): c for c in df.columns}
    if "date" not in cols or "close" not in cols:
        raise DataError(f"{path}: a benchmark index file needs Date and Close columns (has {list(df.columns)})")
    close = pd.Series(df[cols["close"]].to_numpy(float), index=pd.to_datetime(df[cols["date"]])).sort_index()
    return (close.shift(-1) / close - 1.0).dropna()


def backtest(
    pred: pd.DataFrame,
    *,
    strategy: str = "long_only",
    top_k: int = 5,
    cost_bps: float = 10.0,
    hold_days: int = 1,
    rules: MarketRules | None = None,
    benchmark: pd.Series | None = None,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> BacktestResult:
    """Backtest ``pred`` (see the module docstring for the rules). ``benchmark``: daily index returns
    by date (default: the equal-weight mean of the stocks present)."""
    _check(pred, strategy, top_k, cost_bps, hold_days)
    rules = rules or MarketRules()
    cols = list(REQUIRED) + (["day_return"] if "day_return" in pred.columns else [])
    df = pred[cols].copy()
    df["date"] = pd.to_datetime(df["date"])
    if strategy == "long_only":
        if "day_return" not in df and (rules.limit_pct is not None or rules.limit_pct_by_prefix):
            log.warning("The predictions have no day_return column (written before it was added): price limits "
                        "are not applied")
        prob = df.pivot(index="date", columns="stock", values="prob_up")
        move = df.pivot(index="date", columns="stock", values="day_return") if "day_return" in df else prob * np.nan
        weights = long_only_weights(prob, move, int(top_k), int(hold_days), rules)
    else:
        df["weight"] = long_short_weights(df, int(top_k))
        weights = df.pivot(index="date", columns="stock", values="weight").fillna(0.0)
    returns = df.pivot(index="date", columns="stock", values="return").reindex_like(weights).fillna(0.0)
    change = weights.diff()
    change.iloc[:1] = weights.iloc[:1]  # day 1 opens every position
    by_day = df.groupby("date")
    daily = pd.DataFrame({
        "gross": (weights * returns).sum(axis=1),
        "buy": change.clip(lower=0).sum(axis=1),
        "sell": (-change).clip(lower=0).sum(axis=1),
        "holdings": (weights != 0).sum(axis=1),
    })
    daily["turnover"] = daily["buy"] + daily["sell"]
    daily["cost"] = daily["turnover"] * (cost_bps / 1e4) + daily["sell"] * (rules.stamp_duty_bps / 1e4)
    daily["net"] = daily["gross"] - daily["cost"]
    if benchmark is None:
        daily["benchmark"] = by_day["return"].mean()
        bench_name = "equal-weight universe"
    else:
        bench = benchmark.copy()
        bench.index = pd.to_datetime(bench.index)
        daily["benchmark"] = bench.reindex(daily.index)
        if daily["benchmark"].isna().any():
            missing = daily.index[daily["benchmark"].isna()]
            log.warning("The benchmark index has no return for %d day(s) (first %s): counted as 0",
                        len(missing), missing[0].date())
            daily["benchmark"] = daily["benchmark"].fillna(0.0)
        bench_name = "index"
    daily["equity"] = (1.0 + daily["net"]).cumprod()
    daily["benchmark_equity"] = (1.0 + daily["benchmark"]).cumprod()

    net, bm = daily["net"].to_numpy(), daily["benchmark"].to_numpy()
    metrics: dict[str, Any] = {
        **performance(net, periods_per_year),
        "information_ratio": information_ratio(net, bm, periods_per_year),
        "turnover": float(daily["turnover"].mean()) if len(daily) else float("nan"),
        "gross_total_return": float(np.prod(1.0 + daily["gross"].to_numpy()) - 1.0) if len(daily) else float("nan"),
        "mean_holdings": float(daily["holdings"].mean()) if len(daily) else float("nan"),
        "benchmark": {**performance(bm, periods_per_year), "name": bench_name},
        "settings": {"strategy": strategy, "top_k": int(top_k), "cost_bps": float(cost_bps),
                     "hold_days": int(hold_days), "limit_pct": rules.limit_pct,
                     "stamp_duty_bps": rules.stamp_duty_bps, "periods_per_year": int(periods_per_year)},
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
    ax.plot(daily.index, daily["benchmark_equity"], label="benchmark", linestyle="--")
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
    atomic_write_text(paths["metrics"], json.dumps(result.metrics, indent=2, ensure_ascii=False))
    atomic_write_text(paths["daily"], result.daily.to_csv(index_label="date"))
    plot_equity(result.daily, paths["equity"], title or f"{split}: {result.metrics['settings']['strategy']}")
    return paths
