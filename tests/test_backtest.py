"""Backtest figures on hand-computed cases: constant returns, a known drawdown, costs, IR, strategies,
and the A-share rules of the long-only default (T+1, holding period, price limits, stamp duty)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lightquant.evaluation.backtest import (
    MarketRules,
    backtest,
    information_ratio,
    long_short_weights,
    max_drawdown,
    performance,
    save_backtest,
)
from lightquant.evaluation.cli import main as cli_main

DAYS = pd.bdate_range("2024-01-01", periods=300)


def frame(returns: dict[str, list[float]], probs: dict[str, list[float]] | None = None,
          moves: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Predictions table: one row per (day, stock); probs default to 0.5 (ties); ``moves``: day_return
    (the move into the day's close), default 0."""
    rows = []
    for stock, rs in returns.items():
        ps = (probs or {}).get(stock, [0.5] * len(rs))
        ms = (moves or {}).get(stock, [0.0] * len(rs))
        for day, r, p, m in zip(DAYS, rs, ps, ms):
            rows.append({"date": day, "stock": stock, "prob_up": p, "return": r, "label": int(r > 0), "day_return": m})
    return pd.DataFrame(rows)


def test_constant_returns():
    n, r = 260, 0.001  # over a year: annualised
    res = backtest(frame({"A": [r] * n, "B": [r] * n}), strategy="long_only", top_k=2, cost_bps=0.0)
    m = res.metrics
    assert m["n_days"] == n
    assert m["annual_return"] == pytest.approx((1 + r) ** 252 - 1, rel=1e-9)
    assert m["total_return"] == pytest.approx((1 + r) ** n - 1, rel=1e-9)
    assert m["annual_vol"] == pytest.approx(0.0, abs=1e-12)
    assert m["sharpe"] == math.inf  # zero volatility, positive mean
    assert m["max_drawdown"] == 0.0 and m["calmar"] == math.inf
    assert m["hit_rate"] == 1.0
    assert m["benchmark"]["annual_return"] == pytest.approx(m["annual_return"])
    assert math.isnan(m["information_ratio"])  # active return is 0 every day: 0/0
    assert m["turnover"] == pytest.approx(1.0 / n)  # opening day only: weights 0.5 + 0.5
    np.testing.assert_allclose(res.daily["equity"].iloc[-1], (1 + r) ** n)


def test_zero_and_negative_constant_returns():
    flat = performance(np.zeros(10), periods_per_year=10)
    assert flat["annual_return"] == 0.0 and flat["max_drawdown"] == 0.0
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["calmar"])
    down = performance(np.full(10, -0.01))
    assert down["sharpe"] == -math.inf
    assert down["max_drawdown"] == pytest.approx(1 - 0.99**10)


def test_known_drawdown():
    r = [0.1, -0.5, 0.2, 0.5]  # equity 1.1, 0.55, 0.66, 0.99: peak 1.1 -> trough 0.55
    m = performance(np.array(r), periods_per_year=4)  # four days are a "year" here: annualised
    assert m["max_drawdown"] == pytest.approx(0.5)
    assert m["total_return"] == pytest.approx(0.99 - 1)
    assert m["annual_return"] == pytest.approx(0.99 - 1) and m["annualised"]
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.5)
    assert m["hit_rate"] == pytest.approx(0.75)
    assert m["sharpe"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(4))
    short = performance(np.array(r))  # four days of a 252-day year: no annual figure, the total return
    assert short["annual_return"] is None and short["calmar"] is None and not short["annualised"]
    assert short["total_return"] == pytest.approx(0.99 - 1)
    assert max_drawdown(np.array([-0.2, 0.1])) == pytest.approx(0.2)  # from the starting capital
    # The same path through the backtest: one stock, held long every day.
    bt = backtest(frame({"A": r}), strategy="long_only", top_k=1, cost_bps=0.0).metrics
    assert bt["max_drawdown"] == pytest.approx(0.5) and bt["total_return"] == pytest.approx(m["total_return"])


def test_long_short_hand_computed():
    one_day = frame({"A": [0.02], "B": [0.01], "C": [-0.01], "D": [-0.03]},
                    {"A": [0.9], "B": [0.6], "C": [0.4], "D": [0.1]})
    k1 = backtest(one_day, strategy="long_short", top_k=1, cost_bps=10.0).daily.iloc[0]
    assert k1["gross"] == pytest.approx(0.02 - (-0.03))
    assert k1["turnover"] == pytest.approx(2.0)  # +1 A, -1 D
    assert k1["net"] == pytest.approx(0.05 - 2.0 * 0.001)
    assert k1["benchmark"] == pytest.approx((0.02 + 0.01 - 0.01 - 0.03) / 4)
    k2 = backtest(one_day, strategy="long_short", top_k=2, cost_bps=0.0).daily.iloc[0]
    assert k2["gross"] == pytest.approx((0.02 + 0.01) / 2 - (-0.01 - 0.03) / 2)
    # top_k larger than half the day's stocks: k = n // 2, so nobody is long and short.
    k9 = backtest(one_day, strategy="long_short", top_k=9, cost_bps=0.0).daily.iloc[0]
    assert k9["gross"] == pytest.approx(k2["gross"])
    top = backtest(one_day, strategy="long_only", top_k=3, cost_bps=0.0).daily.iloc[0]
    assert top["gross"] == pytest.approx((0.02 + 0.01 - 0.01) / 3)


def test_ties_and_tiny_days_never_hold_a_stock_on_both_sides():
    ties = frame({s: [0.01, 0.02] for s in "DCBA"})  # every prob_up 0.5
    w = long_short_weights(ties, 2)
    first_day = ties.assign(w=w)[ties["date"] == DAYS[0]].set_index("stock")["w"]
    assert first_day.to_dict() == {"A": 0.5, "B": 0.5, "C": -0.5, "D": -0.5}  # ties broken by stock name
    odd = frame({s: [0.01] for s in "ABC"}, {"A": [0.5], "B": [0.5], "C": [0.5]})
    assert sorted(long_short_weights(odd, 5)) == [-1.0, 0.0, 1.0]  # 3 stocks: k = 1, middle flat
    single = backtest(frame({"A": [0.05, 0.05]}), strategy="long_short", top_k=1, cost_bps=10.0)
    assert (single.daily["turnover"] == 0).all() and (single.daily["net"] == 0).all()  # 1 stock: no pair


def test_costs_reduce_returns_by_exactly_turnover_times_cost():
    # top_k=1: day 1 long A (turnover 1), day 2 switch to B (2), day 3 stay in B (0).
    pred = frame({"A": [0.01, 0.02, -0.01], "B": [0.0, 0.03, 0.01]}, {"A": [0.9, 0.2, 0.3], "B": [0.1, 0.8, 0.7]})
    free = backtest(pred, strategy="long_only", top_k=1, cost_bps=0.0).daily
    paid = backtest(pred, strategy="long_only", top_k=1, cost_bps=25.0).daily
    np.testing.assert_allclose(free["turnover"], [1.0, 2.0, 0.0])
    np.testing.assert_allclose(free["net"], [0.01, 0.03, 0.01])
    np.testing.assert_allclose(free["net"] - paid["net"], free["turnover"] * 25e-4, rtol=0, atol=1e-15)
    assert (paid["benchmark"] == free["benchmark"]).all()  # the benchmark pays no costs


def test_information_ratio():
    assert information_ratio(np.array([0.02, 0.03, 0.04]), np.full(3, 0.01)) == pytest.approx(2.0 * np.sqrt(252))
    # Through the backtest: A is always picked; the benchmark is the mean of A and B.
    a, b = [0.03, 0.01, 0.04, 0.0], [0.01, 0.01, 0.0, 0.02]
    m = backtest(frame({"A": a, "B": b}, {"A": [0.9] * 4, "B": [0.1] * 4}), strategy="long_only", top_k=1,
                 cost_bps=0.0).metrics
    active = np.array(a) - (np.array(a) + np.array(b)) / 2
    assert m["information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * np.sqrt(252))


def test_unsorted_input_and_missing_days_per_stock():
    pred = frame({"A": [0.01, 0.02, 0.03], "B": [0.02, -0.01, 0.0]}, {"A": [0.9] * 3, "B": [0.1] * 3})
    pred = pred.drop(index=pred.index[(pred["stock"] == "A") & (pred["date"] == DAYS[1])])  # A absent on day 2
    shuffled = pred.sample(frac=1.0, random_state=0)
    res = backtest(shuffled, strategy="long_short", top_k=1, cost_bps=0.0)
    assert list(res.daily.index) == list(DAYS[:3])
    np.testing.assert_allclose(res.daily["gross"], [0.01 - 0.02, 0.0, 0.03 - 0.0])  # day 2: one stock, no pair
    # long-only: A is held through its missing day (suspended: it cannot be sold, earns 0), so B is not bought
    held = backtest(shuffled, strategy="long_only", top_k=1, cost_bps=0.0).daily
    np.testing.assert_allclose(held["gross"], [0.01, 0.0, 0.03])
    np.testing.assert_allclose(held["turnover"], [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda p: p.drop(columns="return"), "missing \\['return'\\]"),
        (lambda p: pd.concat([p, p.iloc[:1]]), "duplicate"),
    ],
)
def test_bad_tables_are_clear_errors(change, match):
    with pytest.raises(ValueError, match=match):
        backtest(change(frame({"A": [0.01, 0.02]})))


def test_bad_settings_are_clear_errors():
    pred = frame({"A": [0.01, 0.02]})
    with pytest.raises(ValueError, match="backtest.strategy='momentum'"):
        backtest(pred, strategy="momentum")
    with pytest.raises(ValueError, match="backtest.top_k=0"):
        backtest(pred, top_k=0)
    with pytest.raises(ValueError, match="backtest.cost_bps=-1"):
        backtest(pred, cost_bps=-1)


def test_save_backtest_and_cli(tmp_path, capsys):
    pred = frame({"A": [0.01, -0.02, 0.03, 0.0], "B": [0.0, 0.01, -0.01, 0.02], "C": [0.02, 0.0, 0.01, -0.01]},
                 {"A": [0.7, 0.2, 0.6, 0.5], "B": [0.4, 0.9, 0.1, 0.6], "C": [0.5, 0.5, 0.5, 0.5]})
    paths = save_backtest(backtest(pred, top_k=1), tmp_path / "bt", "val")
    assert paths["equity"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["metrics"].read_text())
    assert saved["settings"] == {"strategy": "long_only", "top_k": 1, "cost_bps": 10.0, "hold_days": 1,
                                 "limit_pct": None, "stamp_duty_bps": 0.0, "periods_per_year": 252}
    assert len(pd.read_csv(paths["daily"])) == 4

    csv = tmp_path / "predictions_test.csv"
    pred.to_csv(csv, index=False)
    assert cli_main(["backtest", str(csv), "--strategy", "long_short", "--top-k", "1", "--cost-bps", "0",
                     "--limit-pct", "0.1", "--stamp-duty-bps", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["strategy"] == "long_short" and printed["n_days"] == 4
    assert printed["settings"]["limit_pct"] == 0.1 and printed["settings"]["stamp_duty_bps"] == 5.0
    assert (tmp_path / "equity_test.png").is_file() and (tmp_path / "backtest_test.json").is_file()


# ------------------------------------------------------------------ A-share rules (long_only)
def test_a_limit_up_day_blocks_the_buy_and_a_limit_down_day_blocks_the_sale():
    rules = MarketRules(limit_pct=0.10)
    # Day 1: A is the pick but closed at limit-up (+9.98 %, the fen rounding): not bought, cash.
    # Day 2: A is bought (an ordinary close). Day 3: B is the pick but A closed limit-down: A is kept.
    # Day 4: A is sold, B bought.
    pred = frame({"A": [0.05, 0.01, -0.02, 0.03], "B": [0.01, 0.02, 0.04, 0.01]},
                 {"A": [0.9, 0.9, 0.1, 0.1], "B": [0.1, 0.1, 0.9, 0.9]},
                 moves={"A": [0.0998, 0.0, -0.10, 0.0], "B": [0.0] * 4})
    daily = backtest(pred, top_k=1, cost_bps=0.0, rules=rules).daily
    np.testing.assert_allclose(daily["gross"], [0.0, 0.01, -0.02, 0.01])
    np.testing.assert_allclose(daily["buy"], [0.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(daily["sell"], [0.0, 0.0, 0.0, 1.0])
    free = backtest(pred, top_k=1, cost_bps=0.0).daily  # no limits: the ranking is followed every day
    np.testing.assert_allclose(free["gross"], [0.05, 0.01, 0.04, 0.01])
    # A 20 % board by code prefix: +9.98 % is an ordinary day there
    board = MarketRules(limit_pct=0.10, limit_pct_by_prefix={"A": 0.20})
    np.testing.assert_allclose(backtest(pred, top_k=1, cost_bps=0.0, rules=board).daily["gross"][:1], [0.05])


def test_stamp_duty_is_charged_on_sells_only():
    pred = frame({"A": [0.0, 0.0, 0.0], "B": [0.0, 0.0, 0.0]}, {"A": [0.9, 0.1, 0.1], "B": [0.1, 0.9, 0.9]})
    daily = backtest(pred, top_k=1, cost_bps=3.0, rules=MarketRules(stamp_duty_bps=5.0)).daily
    np.testing.assert_allclose(daily["buy"], [1.0, 1.0, 0.0])  # buy A; sell A, buy B; hold
    np.testing.assert_allclose(daily["sell"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(daily["cost"], [1.0 * 3e-4, 2.0 * 3e-4 + 1.0 * 5e-4, 0.0], rtol=0, atol=1e-15)


def test_t_plus_one_and_a_longer_holding_period():
    probs = {"A": [0.9, 0.1, 0.1, 0.1], "B": [0.1, 0.9, 0.9, 0.9]}
    pred = frame({"A": [0.01] * 4, "B": [0.02] * 4}, probs)
    t1 = backtest(pred, top_k=1, cost_bps=0.0, hold_days=1).daily  # A bought day 1, sold day 2 (T+1)
    np.testing.assert_allclose(t1["gross"], [0.01, 0.02, 0.02, 0.02])
    hold3 = backtest(pred, top_k=1, cost_bps=0.0, hold_days=3).daily  # A held until day 4
    np.testing.assert_allclose(hold3["gross"], [0.01, 0.01, 0.01, 0.02])
    np.testing.assert_allclose(hold3["sell"], [0.0, 0.0, 0.0, 1.0])


def test_an_index_benchmark_and_the_market_rules_config(tmp_path):
    from lightquant.evaluation.backtest import index_returns

    index = tmp_path / "csi300.csv"
    index.write_text("Date,Close\n" + "".join(f"{d.date()},{100 * 1.01 ** i}\n" for i, d in enumerate(DAYS[:5])))
    pred = frame({"A": [0.0] * 4, "B": [0.0] * 4})
    m = backtest(pred, top_k=1, benchmark=index_returns(index)).metrics
    assert m["benchmark"]["name"] == "index" and m["benchmark"]["total_return"] == pytest.approx(1.01 ** 4 - 1)
    rules = MarketRules.from_config({"limit_pct": 0.1, "limit_pct_by_prefix": {"300": 0.2, "30": 0.3},
                                     "stamp_duty_bps": 5})
    np.testing.assert_allclose(rules.limits(["600000", "300750", "301000"]), [0.1, 0.2, 0.3])  # longest prefix
    with pytest.raises(ValueError, match="dataset.market has unknown key"):
        MarketRules.from_config({"limit": 0.1})
