"""The shared data pipeline: panel -> features, labels, splits, windows, news index, cache.

Every test states a rule from ``lightquant.data.market``'s docstring (or the brief of
the data layer) and checks it against an oracle computed independently from the
``Panel`` (or written by hand), never against the implementation's own intermediates.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from lightquant.data.cache import cached_panel, load_panel
from lightquant.data.features import FEATURES, Rows, compute_features
from lightquant.data.market import MarketData, build_market_data
from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.data.synthetic import SyntheticSource

FEATS = list(FEATURES)  # every feature, so every formula is covered
SPLITS = {"train_end": "2021-12-31", "val_end": "2022-03-31"}  # 2021-12-31 is a Friday
T = 5


# ---------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def _synthetic(**kw: object) -> Panel:
    args = dict(n_stocks=6, end="2022-06-30", suspension_rate=0.01, seed=7)
    args.update(kw)
    return SyntheticSource(**args).load()


def synth(**kw: object) -> Panel:
    """A fresh, mutable copy of a small synthetic market (with late listings and suspensions)."""
    return copy_panel(_synthetic(**kw))


def copy_panel(p: Panel) -> Panel:
    return Panel(
        stocks=list(p.stocks),
        dates=p.dates.copy(),
        prices={k: v.copy() for k, v in p.prices.items()},
        news_stock=p.news_stock.copy(),
        news_date=p.news_date.copy(),
        news_text=list(p.news_text),
    )


def build(panel: Panel, **kw: object) -> MarketData:
    args: dict = dict(features=FEATS, look_back_window=T, splits=SPLITS)
    args.update(kw)
    return build_market_data(panel, **args)


def hand_panel(dates: list[str], closes: dict[str, list], news: list[tuple[str, str, str]] = ()) -> Panel:
    """A tiny panel; ``None`` = not traded. OHLC are fixed multiples of the close, volume 1000."""
    stocks = list(closes)
    c = np.array([[np.nan if v is None else float(v) for v in closes[s]] for s in stocks])
    traded = np.isfinite(c)
    prices = {
        "open": c * 0.995,
        "high": c * 1.01,
        "low": c * 0.98,
        "close": c,
        "adj_close": c.copy(),
        "volume": np.where(traded, 1000.0, np.nan),
    }
    return Panel(
        stocks=stocks,
        dates=np.array(dates, dtype="datetime64[D]"),
        prices=prices,
        news_stock=np.array([stocks.index(s) for s, _, _ in news], dtype=np.int64),
        news_date=np.array([d for _, d, _ in news], dtype="datetime64[D]"),
        news_text=[t for _, _, t in news],
    )


def samples(md: MarketData) -> dict[tuple[str, int, int], int]:
    """(split, stock, day index) -> sample index within the split."""
    out = {}
    for name, s in md.splits.items():
        for i, r in enumerate(s.end_row.tolist()):
            out[(name, int(md.row_stock[r]), int(md.row_day[r]))] = i
    return out


def next_traded(panel: Panel) -> np.ndarray:
    """(S, D): index of the stock's next traded day after d, -1 if none (computed from the panel)."""
    traded = panel.traded
    out = np.full(traded.shape, -1)
    nxt = np.full(traded.shape[0], -1)
    for d in range(traded.shape[1] - 1, -1, -1):
        out[:, d] = nxt
        nxt = np.where(traded[:, d], d, nxt)
    return out


def window_days(panel: Panel, stock: int, day: int, t: int) -> list[int]:
    """The last ``t`` traded days of ``stock`` up to and including ``day`` (from the panel)."""
    days = np.nonzero(panel.traded[stock, : day + 1])[0]
    return days[-t:].tolist()


def day_index(panel: Panel, date: str) -> int:
    i = int(np.searchsorted(panel.dates, np.datetime64(date, "D")))
    assert panel.dates[i] == np.datetime64(date, "D"), date
    return i


def perturb_after(panel: Panel, cut: int, seed: int) -> Panel:
    """Every price field of every stock changed on every day after ``cut`` (NaN pattern kept);
    news dated after ``cut`` altered, some dropped, and new news added (weekends too)."""
    rng = np.random.default_rng(seed)
    q = copy_panel(panel)
    after = np.arange(len(q.dates)) > cut
    for f in PRICE_FIELDS:
        factor = np.exp(rng.normal(0.0, 0.3, q.prices[f].shape))
        q.prices[f][:, after] *= factor[:, after]
    late = q.news_date > q.dates[cut]
    assert late.any()
    keep = ~late | (np.arange(len(late)) % 3 != 0)
    texts = [t + "（已更正）" if lt else t for t, lt in zip(q.news_text, late)]
    extra_days = q.dates[cut] + np.arange(1, 11)  # calendar days after t, weekends included
    extra = [(s, d) for d in extra_days for s in range(len(q.stocks))]
    # new items first: the input order of news must not matter for earlier rows
    q.news_stock = np.concatenate([np.array([s for s, _ in extra], dtype=np.int64), q.news_stock[keep]])
    q.news_date = np.concatenate([np.array([d for _, d in extra], dtype="datetime64[D]"), q.news_date[keep]])
    q.news_text = [f"新消息 {q.stocks[s]} {d}" for s, d in extra] + [t for t, k in zip(texts, keep) if k]
    return q


def window_rows(md: MarketData, end: int) -> range:
    return range(end - md.look_back_window + 1, end + 1)


# ---------------------------------------------------------------- 1. no look-ahead


@pytest.mark.parametrize("cut_date", ["2022-01-03", "2022-02-15", "2022-05-10", "2022-06-28"])
def test_future_prices_and_news_do_not_change_val_test_inputs(cut_date: str) -> None:
    panel = synth()
    cut = day_index(panel, cut_date)
    train_end = np.datetime64(SPLITS["train_end"])
    assert panel.dates[cut] > train_end  # t in the val/test period
    nxt = next_traded(panel)
    md = build(panel)
    md2 = build(perturb_after(panel, cut, seed=cut))
    np.testing.assert_array_equal(md.row_stock, md2.row_stock)  # same NaN pattern -> same rows
    np.testing.assert_array_equal(md.row_day, md2.row_day)
    assert torch.equal(md.norm_mean, md2.norm_mean) and torch.equal(md.norm_std, md2.norm_std)

    checked = 0
    for split in ("val", "test"):
        s, s2 = md.splits[split], md2.splits[split]
        days = md.row_day[s.end_row].numpy()
        idx = torch.from_numpy(np.nonzero((panel.dates[days] > train_end) & (days <= cut))[0])
        if len(idx) == 0:
            continue
        # the same samples exist in the perturbed build (membership depends on t+1's date only)
        pos = {r: i for i, r in enumerate(s2.end_row.tolist())}
        idx2 = torch.tensor([pos[r] for r in s.end_row[idx].tolist()])
        b, b2 = md.batch(split, idx), md2.batch(split, idx2)
        assert torch.equal(b.row, b2.row)
        assert torch.equal(b.x, b2.x), f"{split}: inputs of samples with t <= {cut_date} changed"
        # the window's own past movements (auxiliary targets, where the Batch carries them) are known at t
        if getattr(b, "y_hist", None) is not None:
            assert torch.equal(b.y_hist, b2.y_hist)
        for r in b.row.tolist():
            for w in window_rows(md, r):
                assert md.texts(w) == md2.texts(w), f"news of row {w} changed"
        # labels of samples whose t+1 is also <= cut are unchanged too
        before = torch.from_numpy(nxt[md.row_stock[b.row].numpy(), days[idx.numpy()]] <= cut)
        assert torch.equal(b.y[before], b2.y[before])
        checked += len(idx)
    assert checked > 0
    # the perturbation is real: later rows did change
    assert not torch.equal(md.features, md2.features)


def test_truncating_the_future_does_not_change_val_test_inputs() -> None:
    """Data that simply ends at t+1 gives the same inputs, news and labels for samples up to t."""
    panel = synth()
    cut = day_index(panel, "2022-02-15")
    keep_days = slice(0, cut + 2)  # keep t+1 so samples ending at t still have a label
    last = panel.dates[cut + 1]
    keep_news = panel.news_date <= last
    q = Panel(
        stocks=list(panel.stocks),
        dates=panel.dates[keep_days].copy(),
        prices={k: v[:, keep_days].copy() for k, v in panel.prices.items()},
        news_stock=panel.news_stock[keep_news],
        news_date=panel.news_date[keep_news],
        news_text=[t for t, k in zip(panel.news_text, keep_news) if k],
    )
    splits = {**SPLITS, "test_end": "2022-06-30"}
    md, md2 = build(panel, splits=splits), build(q, splits=splits)
    assert torch.equal(md.norm_mean, md2.norm_mean) and torch.equal(md.norm_std, md2.norm_std)
    a, b = samples(md), samples(md2)
    common = [k for k in a if k[2] <= cut and k in b]
    assert len(common) > 0.9 * sum(1 for k in a if k[2] <= cut)
    key2row = {(int(s), int(d)): r for r, (s, d) in enumerate(zip(md2.row_stock.tolist(), md2.row_day.tolist()))}
    for key in common:
        split = key[0]
        x1 = md.batch(split, torch.tensor([a[key]]))
        x2 = md2.batch(split, torch.tensor([b[key]]))
        assert torch.equal(x1.x, x2.x) and torch.equal(x1.y, x2.y), key
        for w in window_rows(md, int(x1.row)):
            w2 = key2row[(int(md.row_stock[w]), int(md.row_day[w]))]
            assert md.texts(w) == md2.texts(w2)


def test_train_period_raw_windows_do_not_see_the_future() -> None:
    panel = synth()
    cut = day_index(panel, "2021-06-15")  # inside the training period
    md = build(panel, normalize=False)
    md2 = build(perturb_after(panel, cut, seed=1), normalize=False)
    checked = 0
    for split, s in md.splits.items():
        days = md.row_day[s.end_row].numpy()
        idx = torch.from_numpy(np.nonzero(days <= cut)[0])
        if len(idx) == 0:
            continue
        assert torch.equal(s.end_row[idx], md2.splits[split].end_row[idx])
        b, b2 = md.batch(split, idx), md2.batch(split, idx)
        assert torch.equal(b.x, b2.x)
        if getattr(b, "y_hist", None) is not None:
            assert torch.equal(b.y_hist, b2.y_hist)
        for r in b.row.tolist():
            for w in window_rows(md, r):
                assert md.texts(w) == md2.texts(w)
        before = torch.from_numpy(next_traded(panel)[md.row_stock[b.row].numpy(), days[idx.numpy()]] <= cut)
        assert before.sum() > 0
        assert torch.equal(b.y[before], b2.y[before])
        checked += len(idx)
    assert checked > 100


def test_label_comes_from_the_next_trading_day() -> None:
    panel = synth()
    md = build(panel)
    val = md.splits["val"]
    i = int(torch.nonzero(val.ret.abs() > 0.005)[0])
    r = int(val.end_row[i])
    s, t = int(md.row_stock[r]), int(md.row_day[r])
    t1 = int(next_traded(panel)[s, t])
    assert t1 > t

    # flip the sign of the t -> t+1 return: the label flips, the inputs do not move
    q = copy_panel(panel)
    ret = panel.prices["close"][s, t1] / panel.prices["close"][s, t] - 1.0
    q.prices["close"][s, t1] = panel.prices["close"][s, t] * (1.0 - ret)
    md2 = build(q)
    j = val.end_row.tolist().index(r)
    j2 = md2.splits["val"].end_row.tolist().index(r)
    assert float(md2.splits["val"].y[j2]) == 1.0 - float(val.y[j])
    assert float(md2.splits["val"].ret[j2]) == pytest.approx(-float(val.ret[j]), rel=1e-5)
    assert torch.equal(md.batch("val", torch.tensor([j])).x, md2.batch("val", torch.tensor([j2])).x)

    # moving day t+2's close does not touch the label of t
    t2 = int(next_traded(panel)[s, t1])
    q = copy_panel(panel)
    q.prices["close"][s, t2] *= 0.5
    md3 = build(q)
    split3 = md3.splits["val"]  # the target day t+1 did not move
    k = split3.end_row.tolist().index(r)
    assert float(split3.y[k]) == float(val.y[j]) and float(split3.ret[k]) == float(val.ret[j])


def test_every_label_matches_the_panel() -> None:
    """y = [close(next traded day) / close(t) - 1 >= up_threshold], checked for every sample."""
    panel = synth()
    nxt = next_traded(panel)
    close = panel.prices["close"]
    md = build(panel, up_threshold=0.001, down_threshold=-0.001)
    for s in md.splits.values():
        st, d = md.row_stock[s.end_row].numpy(), md.row_day[s.end_row].numpy()
        ret = close[st, nxt[st, d]] / close[st, d] - 1.0
        assert (nxt[st, d] >= 0).all()
        np.testing.assert_allclose(s.ret.numpy(), ret, rtol=1e-5)
        np.testing.assert_array_equal(s.y.numpy(), (ret >= 0.001).astype(np.float32))
        assert not ((ret >= -0.001) & (ret < 0.001)).any()


# ---------------------------------------------------------------- 2. scale-free features


def test_features_are_scale_free() -> None:
    panel = synth()
    k = 2
    q = copy_panel(panel)
    for f in ("open", "high", "low", "close", "adj_close"):
        q.prices[f][k] *= 1000.0
    q.prices["volume"][k] *= 7.0
    md, md2 = build(panel, normalize=False), build(q, normalize=False)
    mine = md.row_stock == k
    assert mine.sum() > 100
    # other stocks: bit-identical; the scaled stock: equal up to float rounding
    assert torch.equal(md.features[~mine], md2.features[~mine])
    torch.testing.assert_close(md2.features[mine], md.features[mine], rtol=1e-5, atol=1e-5)
    for name in md.splits:
        assert torch.equal(md.splits[name].end_row, md2.splits[name].end_row)
        assert torch.equal(md.splits[name].y, md2.splits[name].y)
        torch.testing.assert_close(md.splits[name].ret, md2.splits[name].ret, rtol=1e-5, atol=1e-7)
    # and the raw features really are relative: small numbers, not ~1000
    x = compute_features(Rows.from_panel(q), FEATS)
    assert np.nanmax(np.abs(x)) < 5.0


def test_adv_alstm_features_match_a_pandas_oracle() -> None:
    """c_* are ratios to the same day's close; ma<k> is the mean adjusted close of the stock's last
    k *trading* days (suspensions skipped) over today's, undefined until k days exist."""
    import pandas as pd

    panel = synth()
    rows = Rows.from_panel(panel)
    names = ["c_open", "c_high", "c_low", "ma5", "ma30"]
    x = compute_features(rows, names)
    for s in range(len(panel.stocks)):
        days = np.flatnonzero(panel.traded[s])
        adj = pd.Series(panel.prices["adj_close"][s, days])
        mine = rows.stock == s
        for j, f in enumerate(("open", "high", "low")):
            want = panel.prices[f][s, days] / panel.prices["close"][s, days] - 1
            np.testing.assert_allclose(x[mine, j], want, rtol=1e-12)
        for j, k in ((3, 5), (4, 30)):
            want = (adj.rolling(k).mean() / adj - 1).to_numpy()
            np.testing.assert_allclose(x[mine, j], want, rtol=1e-9, atol=1e-12)  # NaN where pandas has NaN
    assert np.isnan(x[rows.prev < 0, 3]).all() and np.isfinite(x[:, 3]).mean() > 0.9


# ---------------------------------------------------------------- 3. suspensions, late listings, delistings

DAYS10 = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05",
          "2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11", "2024-01-12"]  # fmt: skip


def _gappy_panel() -> Panel:
    return hand_panel(
        DAYS10,
        {
            "A": [10, 10.5, 10.2, 10.4, 10.1, 10.3, 10.6, 10.0, 9.8, 10.2],
            "B": [None, None, None, 20, 21, None, None, 24, 23, 25],  # listed day 3, suspended 5-6
            "C": [5, 5.1, 5.2, 5.3, 5.4, 5.5, None, None, None, None],  # delisted after day 5
        },
    )


def test_windows_stay_inside_one_stock_and_its_traded_days() -> None:
    panel = _gappy_panel()
    feats = ["open", "close", "range"]
    md = build(panel, features=feats, look_back_window=3, normalize=False,
               splits={"train_end": DAYS10[4], "val_end": DAYS10[7]})  # fmt: skip
    assert len(md.row_stock) == int(panel.traded.sum())
    seen = set()
    for name, s in md.splits.items():
        for r in s.end_row.tolist():
            rows = list(window_rows(md, r))
            stock = int(md.row_stock[r])
            assert min(rows) >= 0
            assert all(int(md.row_stock[w]) == stock for w in rows), "window crosses a stock boundary"
            days = [int(md.row_day[w]) for w in rows]
            assert all(panel.traded[stock, d] for d in days), "window includes a non-traded day"
            assert days == window_days(panel, stock, days[-1], 3)
            seen.add((panel.stocks[stock], days[-1]))
    b = panel.stocks.index("B")
    # B: first row has no previous close -> windows containing it are unusable; day 8's window spans the gap
    assert ("B", 7) not in seen and ("B", 8) in seen
    assert ("B", 9) not in seen  # no next day, no label
    assert ("C", 5) not in seen and ("C", 4) in seen  # C has no day after 5

    rows_b8 = [r for r in range(len(md.row_stock)) if int(md.row_stock[r]) == b and int(md.row_day[r]) == 8]
    end = rows_b8[0]
    split = next(n for n, s in md.splits.items() if end in s.end_row.tolist())
    assert split == "test"  # target day 9 (2024-01-12) > val_end
    i = md.splits[split].end_row.tolist().index(end)
    x = md.batch(split, torch.tensor([i])).x[0].double()
    assert [int(md.row_day[w]) for w in window_rows(md, end)] == [4, 7, 8]
    # features computed by hand: "previous day" after the suspension is day 4 (close 21)
    np.testing.assert_allclose(x[:, feats.index("close")], [21 / 20 - 1, 24 / 21 - 1, 23 / 24 - 1], rtol=1e-6)
    np.testing.assert_allclose(x[:, feats.index("open")], [21 * 0.995 / 20 - 1, 24 * 0.995 / 21 - 1, 23 * 0.995 / 24 - 1],
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(x[:, feats.index("range")], [1.01 / 0.98 - 1] * 3, rtol=1e-6)
    # and the label of B's day 4 is day 7's close vs day 4's (target = the next *traded* day)
    md1 = build(panel, features=["range"], look_back_window=1, normalize=False,
                splits={"train_end": DAYS10[4], "val_end": DAYS10[7]})  # fmt: skip
    k = samples(md1)[("val", b, 4)]
    assert float(md1.splits["val"].ret[k]) == pytest.approx(24 / 21 - 1, rel=1e-6)


@pytest.mark.parametrize("t", [2, 3, 4])
def test_windows_of_first_day_features_do_not_cross_stocks(t: int) -> None:
    """'range' is defined on a stock's first day, so only the stock check can stop a window
    from reaching back into the previous stock's rows."""
    panel = _gappy_panel()
    md = build(panel, features=["range"], look_back_window=t, normalize=False,
               splits={"train_end": DAYS10[4], "val_end": DAYS10[7]})  # fmt: skip
    got = set()
    for s in md.splits.values():
        for r in s.end_row.tolist():
            stock = int(md.row_stock[r])
            assert all(int(md.row_stock[w]) == stock for w in window_rows(md, r))
            got.add((panel.stocks[stock], int(md.row_day[r])))
    # oracle: a stock-day is a sample iff the stock has >= t traded days up to it and a later one
    nxt = next_traded(panel)
    expected = {
        (panel.stocks[i], d)
        for i in range(len(panel.stocks))
        for d in range(len(DAYS10))
        if panel.traded[i, d] and panel.traded[i, : d + 1].sum() >= t and nxt[i, d] >= 0
    }
    assert got == expected


def test_a_stock_that_never_trades_is_harmless() -> None:
    panel = hand_panel(DAYS10[:6], {"A": [1, 2, 3, 4, 5, 6], "Z": [None] * 6, "B": [6, 5, 4, 3, 2, 1]},
                       news=[("Z", DAYS10[2], "z news"), ("B", DAYS10[2], "b news")])  # fmt: skip
    md = build(panel, features=["close"], look_back_window=2, splits={"train_end": DAYS10[3], "val_end": DAYS10[4]})
    assert set(md.row_stock.tolist()) == {0, 2}
    assert md.news_text == ["b news"]


# ---------------------------------------------------------------- 4. labels

LABEL_RETURNS = [0.02, 0.0, -0.01, 0.004, -0.0015, 0.003, -0.0016, 0.05]


def _label_panel() -> tuple[Panel, np.ndarray]:
    c = [100.0]
    for r in LABEL_RETURNS:
        c.append(c[-1] * (1 + r))
    days = [str(np.datetime64("2024-01-01") + i) for i in range(len(c))]
    panel = hand_panel(days, {"A": c})
    close = np.array(c)
    return panel, close[1:] / close[:-1] - 1.0  # the returns as the pipeline will compute them


def _labels(md: MarketData) -> dict[int, float]:
    s = md.splits["train"]
    assert len(md.splits["val"]) == len(md.splits["test"]) == 0
    return {int(md.row_day[r]): float(y) for r, y in zip(s.end_row.tolist(), s.y.tolist())}


def test_labels_thresholds_and_dropped_band() -> None:
    panel, ret = _label_panel()
    everything = {"train_end": str(panel.dates[-1]), "val_end": "2099-01-01", "test_end": "2099-12-31"}
    up, down = float(ret[3]), float(ret[4])  # boundaries hit exactly by days 3 and 4
    assert down < 0 < up
    md = build(panel, features=["range"], look_back_window=1, splits=everything, normalize=False,
               up_threshold=up, down_threshold=down)  # fmt: skip
    # day: 0 +2% up | 1 flat dropped | 2 -1% down | 3 == up -> up | 4 == down -> dropped (not < down)
    #      5 +0.3% dropped | 6 -0.16% down | 7 +5% up | 8 last day: no label
    assert _labels(md) == {0: 1.0, 2: 0.0, 3: 1.0, 6: 0.0, 7: 1.0}
    np.testing.assert_allclose(md.splits["train"].ret.numpy(), ret[[0, 2, 3, 6, 7]], rtol=1e-6)

    # equal thresholds drop nothing; 0 makes a flat day "up", 1e-9 makes it "not up"
    md0 = build(panel, features=["range"], look_back_window=1, splits=everything, up_threshold=0.0, down_threshold=0.0)
    assert _labels(md0) == {0: 1.0, 1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0, 5: 1.0, 6: 0.0, 7: 1.0}
    md9 = build(panel, features=["range"], look_back_window=1, splits=everything, up_threshold=1e-9, down_threshold=1e-9)
    assert _labels(md9)[1] == 0.0 and len(_labels(md9)) == 8


def test_label_threshold_errors() -> None:
    panel, _ = _label_panel()
    splits = {"train_end": str(panel.dates[-1]), "val_end": "2099-01-01", "test_end": "2099-12-31"}
    with pytest.raises(ValueError, match=r"dataset\.label"):
        build(panel, splits=splits, up_threshold=0.001, down_threshold=0.002)
    with pytest.raises(ValueError, match=r"dataset\.label"):
        build(panel, splits=splits, label_price="volume")


# ---------------------------------------------------------------- 5. splits by target day


def test_splits_are_by_target_day_inclusive_and_disjoint() -> None:
    panel = synth(suspension_rate=0.03)
    splits = {"train_start": "2021-03-01", "train_end": "2021-12-30", "val_end": "2022-03-31", "test_end": "2022-06-29"}
    md = build(panel, splits=splits)
    nxt = next_traded(panel)
    bounds = {
        "train": ("2021-03-01", "2021-12-30"),
        "val": ("2021-12-31", "2022-03-31"),
        "test": ("2022-04-01", "2022-06-29"),
    }
    targets, last_days = {}, {}
    for name, s in md.splits.items():
        assert len(s) > 0
        st, d = md.row_stock[s.end_row].numpy(), md.row_day[s.end_row].numpy()
        tgt = nxt[st, d]
        assert (tgt >= 0).all()
        targets[name] = panel.dates[tgt]
        last_days[name] = panel.dates[d]
        lo, hi = (np.datetime64(b) for b in bounds[name])
        assert targets[name].min() >= lo and targets[name].max() <= hi, name
        # the range ends are included
        assert targets[name].min() == lo and targets[name].max() == hi, name
    # split by target day, not by t: some val samples end on or before train_end
    assert (last_days["val"] <= np.datetime64("2021-12-30")).any()
    rows = [set(s.end_row.tolist()) for s in md.splits.values()]
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])
    # nothing lost: every usable sample with a target in [train_start, test_end] is in exactly one split
    md_all = build(panel, splits={"train_start": "2021-03-01", "train_end": "2022-06-29", "val_end": "2099-01-01",
                                  "test_end": "2099-12-31"})  # fmt: skip
    assert set().union(*rows) == set(md_all.splits["train"].end_row.tolist())


def test_a_suspension_across_train_end_puts_the_sample_in_val() -> None:
    panel = hand_panel(DAYS10, {"A": [10, 11, 12, 11, 10, 11, 12, 13, 12, 11],
                                "B": [10, 11, 12, 11, None, None, 12, 13, 12, 11]})  # fmt: skip
    md = build(panel, features=["close"], look_back_window=2, normalize=False,
               splits={"train_end": DAYS10[5], "val_end": DAYS10[7]})  # fmt: skip
    keys = samples(md)
    # B's day 3 has target day 6 (> train_end = day 5): val, though t is two days before train_end
    assert ("val", 1, 3) in keys and ("train", 1, 3) not in keys
    assert ("train", 0, 3) in keys and ("train", 0, 4) in keys and ("val", 0, 5) in keys


@pytest.mark.parametrize(
    "splits",
    [
        {"train_end": "2021-13-01", "val_end": "2022-03-31"},
        {"train_end": "not a date", "val_end": "2022-03-31"},
        {"train_end": "2021-12-31"},
        {"val_end": "2022-03-31"},
        {"train_end": "2022-03-31", "val_end": "2022-03-31"},
        {"train_end": "2022-03-31", "val_end": "2021-12-31"},
        {"train_start": "2022-01-05", "train_end": "2021-12-31", "val_end": "2022-03-31"},
        {"train_end": "2021-12-31", "val_end": "2022-03-31", "test_end": "2022-03-01"},
        {"train_end": "2021-12-31", "val_end": "2022-06-30"},  # val_end == the last day: nothing left for test
        {"train_end": "2020-06-30", "val_end": "2022-03-31"},  # no training samples
    ],
)
def test_bad_split_dates_name_dataset_splits(splits: dict) -> None:
    with pytest.raises(ValueError, match=r"dataset\.splits"):
        build(synth(), splits=splits)


# ---------------------------------------------------------------- 6. normalisation


def test_normalisation_is_fitted_on_the_training_period_only() -> None:
    panel = synth()
    md = build(panel)
    train_end = np.datetime64(SPLITS["train_end"])
    later = panel.dates > train_end
    q = copy_panel(panel)
    rng = np.random.default_rng(3)
    for f in PRICE_FIELDS:
        q.prices[f][:, later] *= np.exp(rng.normal(0, 0.5, q.prices[f][:, later].shape))
    md2 = build(q)
    assert torch.equal(md.norm_mean, md2.norm_mean) and torch.equal(md.norm_std, md2.norm_std)
    assert not torch.equal(md.features, md2.features)

    # the same change inside the training period does move them (so the check above can fail)
    q = copy_panel(panel)
    q.prices["close"][:, 50:60] *= 1.5
    assert not torch.equal(build(q).norm_mean, md.norm_mean)

    # train-period features come out standardised (column by column, over defined values)
    raw = compute_features(Rows.from_panel(panel), FEATS)
    train_rows = panel.dates[md.row_day.numpy()] <= train_end
    xn = md.features.numpy().astype(np.float64)
    for j, name in enumerate(FEATS):
        ok = train_rows & np.isfinite(raw[:, j])
        assert abs(xn[ok, j].mean()) < 1e-4, name
        assert abs(xn[ok, j].std() - 1.0) < 1e-4, name
        assert float(md.norm_mean[j]) == pytest.approx(raw[ok, j].mean(), rel=1e-5, abs=1e-9)
        assert float(md.norm_std[j]) == pytest.approx(raw[ok, j].std(), rel=1e-5)


# ---------------------------------------------------------------- 7. batches


def test_batch_gathers_exactly_the_window_rows() -> None:
    panel = synth()
    md = build(panel, normalize=False)
    close_j = FEATS.index("close")
    g = torch.Generator().manual_seed(0)
    for name, s in md.splits.items():
        idx = torch.randint(0, len(s), (17,), generator=g)
        b = md.batch(name, idx)
        assert b.x.shape == (17, T, len(FEATS)) and b.x.dtype == torch.float32
        assert b.y.shape == b.stock.shape == b.date.shape == b.row.shape == (17,)
        for i, k in enumerate(idx.tolist()):
            end = int(s.end_row[k])
            manual = torch.stack([md.features[end - T + 1 + j] for j in range(T)])
            assert torch.equal(b.x[i], manual)
            assert int(b.row[i]) == end and float(b.y[i]) == float(s.y[k])
            stock, day = int(b.stock[i]), int(b.date[i])
            assert stock == int(md.row_stock[end]) and day == int(md.row_day[end])
            # independent oracle from the panel: the window's days and its close feature
            days = window_days(panel, stock, day, T + 1)
            c = panel.prices["close"][stock, days]
            np.testing.assert_allclose(b.x[i, :, close_j].double().numpy(), c[1:] / c[:-1] - 1.0, rtol=1e-5)


def test_to_cpu_round_trips() -> None:
    md = build(synth())
    for device in ("cpu", torch.device("cpu")):
        m2 = md.to(device)
        assert m2 is not md and m2.device.type == "cpu"
        for k in ("features", "row_stock", "row_day", "news_ptr", "norm_mean", "norm_std"):
            assert torch.equal(getattr(md, k), getattr(m2, k)), k
        assert m2.news_text == md.news_text and m2.stocks == md.stocks
        np.testing.assert_array_equal(m2.dates, md.dates)
        assert m2.look_back_window == md.look_back_window and m2.feature_names == md.feature_names
        for name, s in md.splits.items():
            s2 = m2.splits[name]
            assert torch.equal(s.end_row, s2.end_row) and torch.equal(s.y, s2.y) and torch.equal(s.ret, s2.ret)
            idx = torch.arange(min(len(s), 9))
            b, b2 = md.batch(name, idx), m2.batch(name, idx)
            for f in ("x", "y", "stock", "date", "row"):
                assert torch.equal(getattr(b, f), getattr(b2, f))
            assert b2.x.device.type == "cpu"
        assert m2.summary() == md.summary()


# ---------------------------------------------------------------- 8. news attachment

NEWS_DAYS = ["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09", "2024-01-10"]  # Thu Fri Mon Tue Wed


def _news_panel(date_unit: str = "D") -> Panel:
    news = [
        ("A", "2023-12-31", "A before the data"),
        ("A", "2024-01-05", "A 周五"),
        ("B", "2024-01-05", "B 周五"),
        ("A", "2024-01-06", "A 周六"),
        ("B", "2024-01-06", "B 周六"),
        ("A", "2024-01-07", "A 周日"),
        ("B", "2024-01-08", "B 停牌日"),
        ("A", "2024-01-10", "A 周三"),
        ("B", "2024-01-10", "B after its last day"),
        ("A", "2024-01-11", "A after the data"),
    ]
    p = hand_panel(NEWS_DAYS, {"A": [1, 2, 3, 4, 5], "B": [5, 4, None, 3, None]}, news)
    p.news_date = p.news_date.astype(f"datetime64[{date_unit}]")
    return p


@pytest.mark.parametrize("date_unit", ["D", "s", "ns"])
def test_news_attaches_to_the_first_trading_day_on_or_after_its_date(date_unit: str) -> None:
    md = build(_news_panel(date_unit), features=["range"], look_back_window=1,
               splits={"train_end": NEWS_DAYS[2], "val_end": NEWS_DAYS[3]})  # fmt: skip
    got = {
        (md.stocks[int(s)], str(md.dates[int(d)])): md.texts(r)
        for r, (s, d) in enumerate(zip(md.row_stock.tolist(), md.row_day.tolist()))
    }
    assert got == {
        ("A", "2024-01-04"): ["A before the data"],
        ("A", "2024-01-05"): ["A 周五"],
        ("A", "2024-01-08"): ["A 周六", "A 周日"],  # weekend -> Monday, in source order
        ("A", "2024-01-09"): [],
        ("A", "2024-01-10"): ["A 周三"],
        ("B", "2024-01-04"): [],
        ("B", "2024-01-05"): ["B 周五"],
        ("B", "2024-01-09"): ["B 周六", "B 停牌日"],  # B is suspended on Monday -> Tuesday
    }
    # dropped: after the stock's last day / after the data
    assert "B after its last day" not in md.news_text and "A after the data" not in md.news_text
    ptr = md.news_ptr
    assert ptr.dtype == torch.long and ptr.shape == (len(md.row_stock) + 1,)
    assert int(ptr[0]) == 0 and int(ptr[-1]) == len(md.news_text) == 8
    assert bool((ptr[1:] >= ptr[:-1]).all())


def test_news_index_of_a_panel_without_news_is_empty() -> None:
    p = _news_panel()
    p.news_stock, p.news_date, p.news_text = np.zeros(0, np.int64), np.zeros(0, "datetime64[D]"), []
    md = build(p, features=["range"], look_back_window=1, splits={"train_end": NEWS_DAYS[2], "val_end": NEWS_DAYS[3]})
    assert md.news_text == [] and md.news_ptr.tolist() == [0] * (len(md.row_stock) + 1)


def test_synthetic_news_all_attach_to_their_own_day() -> None:
    """Synthetic news is dated on its stock's trading days: every text lands on exactly that row."""
    panel = synth()
    md = build(panel)
    assert len(md.news_text) == len(panel.news_text)
    rows = {(int(s), int(d)): r for r, (s, d) in enumerate(zip(md.row_stock.tolist(), md.row_day.tolist()))}
    expected: dict[int, list[str]] = {}
    for s, d, t in zip(panel.news_stock.tolist(), np.searchsorted(panel.dates, panel.news_date).tolist(),
                       panel.news_text):  # fmt: skip
        expected.setdefault(rows[(s, d)], []).append(t)
    for r in range(len(md.row_stock)):
        assert md.texts(r) == expected.get(r, [])


# ---------------------------------------------------------------- 9. cache


class CountingSource:
    name = "fake"

    def __init__(self, panel: Panel, fp: str = "a" * 64) -> None:
        self.panel, self.fp, self.loads = panel, fp, 0

    def fingerprint(self) -> str:
        return self.fp

    def load(self) -> Panel:
        self.loads += 1
        return copy_panel(self.panel)


def _cache_test_panel() -> Panel:
    p = hand_panel(
        DAYS10,
        {"贵州茅台": [1800.5, 1790, None, None, 1801, 1799.99, 1805, 1810, None, 1790],
         "工商银行": [None, None, 4.7, 4.71, 4.72, 4.7, 4.69, 4.7, 4.7, 4.71]},  # fmt: skip
        news=[
            ("贵州茅台", "2024-01-06", "贵州茅台：一季度营收同比增长 18%，净利润超预期"),
            ("工商银行", "2024-01-02", "工商银行发布公告 — “稳健” 🚀"),
            ("工商银行", "2024-01-02", ""),
            ("贵州茅台", "2023-12-30", "emoji and ascii only"),
            ("工商银行", "2024-01-03", "  前后有空格，\n还有换行\t "),
        ],
    )
    p.prices["volume"][0, 5] = np.nan  # a traded day with a missing field
    return p


def assert_panels_equal(a: Panel, b: Panel) -> None:
    assert a.stocks == b.stocks
    assert a.dates.dtype == b.dates.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(a.dates, b.dates)
    assert set(a.prices) == set(b.prices)
    for f in PRICE_FIELDS:
        assert a.prices[f].dtype == b.prices[f].dtype
        np.testing.assert_array_equal(np.isnan(a.prices[f]), np.isnan(b.prices[f]), err_msg=f)
        np.testing.assert_array_equal(a.prices[f], b.prices[f], err_msg=f)
    np.testing.assert_array_equal(a.news_stock, b.news_stock)
    np.testing.assert_array_equal(a.news_date, b.news_date)
    assert a.news_text == b.news_text


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_cache_loads_once_per_fingerprint_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # relative writes would land here
    cache = tmp_path / "cache"
    panel = _cache_test_panel()
    src = CountingSource(panel)
    before = _all_files(tmp_path)

    p1 = cached_panel(src, cache)
    p2 = cached_panel(src, cache)
    assert src.loads == 1
    assert_panels_equal(p1, panel)
    assert_panels_equal(p2, panel)

    src.fp = "b" * 64
    assert_panels_equal(cached_panel(src, cache), panel)
    assert src.loads == 2
    src.fp = "a" * 64  # the older entry is still valid
    cached_panel(src, str(cache))
    assert src.loads == 2

    new = _all_files(tmp_path) - before
    assert new and all(p.is_relative_to(cache) for p in new), sorted(new)
    assert not [p for p in new if p.suffix == ".tmp"]
    assert not list(work.iterdir())

    # cache_dir None: no caching at all, nothing written
    before = _all_files(tmp_path)
    cached_panel(src, None)
    cached_panel(src, None)
    assert src.loads == 4 and _all_files(tmp_path) == before


def test_cached_panel_feeds_the_same_market_data(tmp_path: Path) -> None:
    panel = synth()
    src = CountingSource(panel, fp=SyntheticSource(n_stocks=6).fingerprint())
    cached_panel(src, tmp_path)
    again = cached_panel(src, tmp_path)
    assert src.loads == 1
    assert_panels_equal(again, panel)
    a, b = build(panel), build(again)
    assert torch.equal(a.features, b.features) and a.news_text == b.news_text


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "bitflip", "old_format"])
def test_corrupted_cache_is_rebuilt_not_trusted(tmp_path: Path, damage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    panel = _cache_test_panel()
    src = CountingSource(panel)
    cached_panel(src, tmp_path)
    (path,) = list((tmp_path / "panels").glob("*.npz"))
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a cache" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "bitflip":
        flipped = bytearray(blob)
        flipped[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(flipped))
    elif damage == "old_format":
        import lightquant.data.cache as cache_mod

        monkeypatch.setattr(cache_mod, "CACHE_FORMAT", cache_mod.CACHE_FORMAT + 1)
    got = cached_panel(src, tmp_path)
    assert src.loads == 2
    assert_panels_equal(got, panel)
    assert_panels_equal(load_panel(path), panel)  # and the cache was rewritten with good data
    assert sorted(p.name for p in (tmp_path / "panels").iterdir()) == [path.name]


# ---------------------------------------------------------------- 10. clear errors


def test_unknown_feature_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="dataset.features") as e:
        build(synth(), features=["close", "momentum"])
    msg = str(e.value)
    assert "momentum" in msg
    for name in FEATURES:
        assert repr(name) in msg or name in msg
    with pytest.raises(ValueError, match="dataset.features"):
        build(synth(), features=[])


@pytest.mark.parametrize("t", [0, -1])
def test_look_back_window_below_one_raises(t: int) -> None:
    with pytest.raises(ValueError, match="look_back_window"):
        build(synth(), look_back_window=t)


def test_window_longer_than_any_history_raises() -> None:
    with pytest.raises(ValueError, match="look_back_window"):
        build(synth(), look_back_window=10_000)



def test_a_price_only_load_leaves_the_texts_on_disk_and_the_cache_whole(tmp_path: Path) -> None:
    from lightquant.data.market import load_market_data

    src = SyntheticSource(n_stocks=4, end="2022-06-30", seed=3)
    kw = dict(features=FEATS, look_back_window=T, splits=SPLITS)
    bare = load_market_data(src, cache_dir=str(tmp_path), news=False, **kw)  # cold: fills the cache
    assert bare.news_text == [] and int(bare.news_ptr.max()) == 0 and "news" not in bare.summary()
    full = load_market_data(src, cache_dir=str(tmp_path), **kw)  # warm: the same file, texts included
    assert len(full.news_text) > 100 and torch.equal(full.features, bare.features)
    assert torch.equal(full.splits["test"].end_row, bare.splits["test"].end_row)
    assert load_market_data(src, cache_dir=str(tmp_path), news=False, **kw).news_text == []  # warm, no texts
