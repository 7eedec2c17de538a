"""Backtest figures on hand-computed cases: constant returns, a known drawdown, costs, IR, strategies."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lightquant.evaluation.backtest import (
    backtest,
    information_ratio,
    max_drawdown,
    performance,
    save_backtest,
    target_weights,
)
from lightquant.evaluation.cli import main as cli_main

DAYS = pd.bdate_range("2024-01-01", periods=30)


def frame(returns: dict[str, list[float]], probs: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Predictions table: one row per (day, stock); probs default to 0.5 (ties)."""
    rows = []
    for stock, rs in returns.items():
        ps = (probs or {}).get(stock, [0.5] * len(rs))
        for day, r, p in zip(DAYS, rs, ps):
            rows.append({"date": day, "stock": stock, "prob_up": p, "return": r, "label": int(r > 0)})
    return pd.DataFrame(rows)


def test_constant_returns():
    n, r = 20, 0.001
    res = backtest(frame({"A": [r] * n, "B": [r] * n}), strategy="top_k", top_k=2, cost_bps=0.0)
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
    flat = performance(np.zeros(10))
    assert flat["annual_return"] == 0.0 and flat["max_drawdown"] == 0.0
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["calmar"])
    down = performance(np.full(10, -0.01))
    assert down["sharpe"] == -math.inf
    assert down["max_drawdown"] == pytest.approx(1 - 0.99**10)


def test_known_drawdown():
    r = [0.1, -0.5, 0.2, 0.5]  # equity 1.1, 0.55, 0.66, 0.99: peak 1.1 -> trough 0.55
    m = performance(np.array(r))
    assert m["max_drawdown"] == pytest.approx(0.5)
    assert m["total_return"] == pytest.approx(0.99 - 1)
    assert m["annual_return"] == pytest.approx(0.99 ** (252 / 4) - 1)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.5)
    assert m["hit_rate"] == pytest.approx(0.75)
    assert m["sharpe"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(252))
    assert max_drawdown(np.array([-0.2, 0.1])) == pytest.approx(0.2)  # from the starting capital
    # The same path through the backtest: one stock, held long every day.
    bt = backtest(frame({"A": r}), strategy="top_k", top_k=1, cost_bps=0.0).metrics
    assert bt["max_drawdown"] == pytest.approx(0.5) and bt["annual_return"] == pytest.approx(m["annual_return"])


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
    top = backtest(one_day, strategy="top_k", top_k=3, cost_bps=0.0).daily.iloc[0]
    assert top["gross"] == pytest.approx((0.02 + 0.01 - 0.01) / 3)


def test_ties_and_tiny_days_never_hold_a_stock_on_both_sides():
    ties = frame({s: [0.01, 0.02] for s in "DCBA"})  # every prob_up 0.5
    w = target_weights(ties, "long_short", 2)
    first_day = ties.assign(w=w)[ties["date"] == DAYS[0]].set_index("stock")["w"]
    assert first_day.to_dict() == {"A": 0.5, "B": 0.5, "C": -0.5, "D": -0.5}  # ties broken by stock name
    odd = frame({s: [0.01] for s in "ABC"}, {"A": [0.5], "B": [0.5], "C": [0.5]})
    assert sorted(target_weights(odd, "long_short", 5)) == [-1.0, 0.0, 1.0]  # 3 stocks: k = 1, middle flat
    single = backtest(frame({"A": [0.05, 0.05]}), strategy="long_short", top_k=1, cost_bps=10.0)
    assert (single.daily["turnover"] == 0).all() and (single.daily["net"] == 0).all()  # 1 stock: no pair


def test_costs_reduce_returns_by_exactly_turnover_times_cost():
    # top_k=1: day 1 long A (turnover 1), day 2 switch to B (2), day 3 stay in B (0).
    pred = frame({"A": [0.01, 0.02, -0.01], "B": [0.0, 0.03, 0.01]}, {"A": [0.9, 0.2, 0.3], "B": [0.1, 0.8, 0.7]})
    free = backtest(pred, strategy="top_k", top_k=1, cost_bps=0.0).daily
    paid = backtest(pred, strategy="top_k", top_k=1, cost_bps=25.0).daily
    np.testing.assert_allclose(free["turnover"], [1.0, 2.0, 0.0])
    np.testing.assert_allclose(free["net"], [0.01, 0.03, 0.01])
    np.testing.assert_allclose(free["net"] - paid["net"], free["turnover"] * 25e-4, rtol=0, atol=1e-15)
    assert (paid["benchmark"] == free["benchmark"]).all()  # the benchmark pays no costs


def test_information_ratio():
    assert information_ratio(np.array([0.02, 0.03, 0.04]), np.full(3, 0.01)) == pytest.approx(2.0 * np.sqrt(252))
    # Through the backtest: A is always picked; the benchmark is the mean of A and B.
    a, b = [0.03, 0.01, 0.04, 0.0], [0.01, 0.01, 0.0, 0.02]
    m = backtest(frame({"A": a, "B": b}, {"A": [0.9] * 4, "B": [0.1] * 4}), strategy="top_k", top_k=1,
                 cost_bps=0.0).metrics
    active = np.array(a) - (np.array(a) + np.array(b)) / 2
    assert m["information_ratio"] == pytest.approx(active.mean() / active.std(ddof=1) * np.sqrt(252))


def test_unsorted_input_and_missing_days_per_stock():
    pred = frame({"A": [0.01, 0.02, 0.03], "B": [0.02, -0.01, 0.0]}, {"A": [0.9] * 3, "B": [0.1] * 3})
    pred = pred.drop(index=pred.index[(pred["stock"] == "A") & (pred["date"] == DAYS[1])])  # A absent on day 2
    res = backtest(pred.sample(frac=1.0, random_state=0), strategy="top_k", top_k=1, cost_bps=0.0)
    assert list(res.daily.index) == list(DAYS[:3])
    np.testing.assert_allclose(res.daily["gross"], [0.01, -0.01, 0.03])  # day 2 only B trades
    np.testing.assert_allclose(res.daily["turnover"], [1.0, 2.0, 2.0])


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
    assert saved["settings"] == {"strategy": "long_short", "top_k": 1, "cost_bps": 10.0, "periods_per_year": 252}
    assert len(pd.read_csv(paths["daily"])) == 4

    csv = tmp_path / "predictions_test.csv"
    pred.to_csv(csv, index=False)
    assert cli_main(["backtest", str(csv), "--strategy", "top_k", "--top-k", "2", "--cost-bps", "0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["strategy"] == "top_k" and printed["n_days"] == 4
    assert (tmp_path / "equity_test.png").is_file() and (tmp_path / "backtest_test.json").is_file()
