"""The synthetic market: deterministic, well-formed, realistic enough, and its planted signals are there."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.data.synthetic import TEMPLATES, SyntheticSource, template_polarity

# Large enough for accuracies to within ~+-0.01, small enough to stay fast.
SIGNAL_ARGS = dict(n_stocks=30, start="2021-01-04", end="2023-12-29", seed=5)


@functools.lru_cache(maxsize=None)
def _load(**kwargs: object) -> Panel:
    return SyntheticSource(**kwargs).load()


def load(**kwargs: object) -> Panel:
    return _load(**kwargs)


def consecutive_log_returns(panel: Panel) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per stock: (its traded day indices, log returns between consecutive ones: one fewer)."""
    out = []
    for row in panel.prices["close"]:
        idx = np.nonzero(np.isfinite(row))[0]
        out.append((idx, np.diff(np.log(row[idx]))))
    return out


def price_reversal_accuracy(panel: Panel) -> float:
    hits = [np.sign(-r[:-1]) == np.sign(r[1:]) for _, r in consecutive_log_returns(panel)]
    return float(np.mean(np.concatenate(hits)))


def news_accuracy(panel: Panel) -> float:
    """Direction accuracy of 'the day's net text polarity' on days whose texts have one."""
    pol = template_polarity(panel.news_text)
    day_pol = np.zeros(panel.prices["close"].shape)
    np.add.at(day_pol, (panel.news_stock, np.searchsorted(panel.dates, panel.news_date)), pol)
    hits = []
    for i, (idx, r) in enumerate(consecutive_log_returns(panel)):
        # r[j] is the return from traded day idx[j] to idx[j+1]; the news of idx[j] predicts it.
        sig = np.sign(day_pol[i, idx[:-1]])
        m = sig != 0
        hits.append(np.sign(r[m]) == sig[m])
    return float(np.mean(np.concatenate(hits)))


# ---------------------------------------------------------------- determinism and cache key


def test_same_args_give_identical_panel() -> None:
    kw = dict(n_stocks=8, start="2022-01-03", end="2022-12-30", seed=11)
    a, b = SyntheticSource(**kw).load(), SyntheticSource(**kw).load()
    assert a.stocks == b.stocks
    np.testing.assert_array_equal(a.dates, b.dates)
    for f in PRICE_FIELDS:
        np.testing.assert_array_equal(a.prices[f], b.prices[f])
    np.testing.assert_array_equal(a.news_stock, b.news_stock)
    np.testing.assert_array_equal(a.news_date, b.news_date)
    assert a.news_text == b.news_text

    c = SyntheticSource(**{**kw, "seed": 12}).load()
    assert not np.array_equal(a.prices["close"], c.prices["close"], equal_nan=True)
    assert a.news_text != c.news_text


def test_fingerprint_is_stable_and_changes_with_every_arg() -> None:
    base = SyntheticSource()
    assert base.fingerprint() == SyntheticSource().fingerprint()
    assert base.fingerprint() == SyntheticSource(start="2021-1-4").fingerprint()  # same date, same data
    changes = dict(
        n_stocks=51,
        start="2021-01-05",
        end="2024-12-30",
        seed=38,
        price_signal=0.06,
        news_signal=0.31,
        news_per_day=1.6,
        late_listing_share=0.2,
        suspension_rate=0.003,
        language="en",
    )
    prints = {base.fingerprint()}
    for k, v in changes.items():
        prints.add(SyntheticSource(**{k: v}).fingerprint())
    assert len(prints) == len(changes) + 1


# ---------------------------------------------------------------- shape and well-formedness


def test_panel_layout() -> None:
    p = load(n_stocks=12, start="2022-01-03", end="2022-06-30", seed=1)
    assert len(p.stocks) == 12 and len(set(p.stocks)) == 12
    assert p.dates.dtype == np.dtype("datetime64[D]")
    assert np.all(np.diff(p.dates.astype(np.int64)) > 0)
    assert set(p.prices) == set(PRICE_FIELDS)
    for f in PRICE_FIELDS:
        assert p.prices[f].dtype == np.float64
    assert p.news_stock.dtype == np.int64 and p.news_date.dtype == np.dtype("datetime64[D]")
    assert p.news_stock.min() >= 0 and p.news_stock.max() < 12
    assert np.all(np.isin(p.news_date, p.dates))
    # news only on days its stock traded
    assert p.traded[p.news_stock, np.searchsorted(p.dates, p.news_date)].all()
    assert all(p.stocks[i] in t for i, t in zip(p.news_stock.tolist(), p.news_text))


def test_default_calendar_is_csmd_like() -> None:
    p = load()
    assert len(p.stocks) == 50
    assert 1000 <= len(p.dates) <= 1050
    assert str(p.dates[0]) == "2021-01-04"
    close = p.prices["close"]
    lo, hi = np.nanmin(close[:, 0]), np.nanmax(close[:, 0])
    assert hi / lo > 50  # raw price levels differ by orders of magnitude
    assert 30_000 < len(p.news_text) < 200_000


def test_unique_names_beyond_combinations() -> None:
    for lang in ("zh", "en"):
        p = SyntheticSource(n_stocks=700, start="2022-01-03", end="2022-01-10", language=lang).load()
        assert len(set(p.stocks)) == 700


def test_ohlc_consistent_and_nan_pattern_shared() -> None:
    p = load(n_stocks=20, start="2021-01-04", end="2022-12-30", seed=3, suspension_rate=0.01, late_listing_share=0.2)
    traded = p.traded
    for f in PRICE_FIELDS:
        np.testing.assert_array_equal(np.isfinite(p.prices[f]), traded, err_msg=f)
    o, h, lo, c, v = (p.prices[f][traded] for f in ("open", "high", "low", "close", "volume"))
    assert np.all(lo > 0) and np.all(v > 0)
    assert np.all(lo <= np.minimum(o, c)) and np.all(np.maximum(o, c) <= h)
    np.testing.assert_array_equal(p.prices["adj_close"], p.prices["close"])
    assert traded.any(axis=0).all()  # dates are the union of trading days


def test_late_listings_and_suspensions() -> None:
    p = load(n_stocks=20, start="2021-01-04", end="2022-12-30", seed=3, suspension_rate=0.01, late_listing_share=0.2)
    traded = p.traded
    first = traded.argmax(axis=1)
    late = first > 0
    assert late.sum() == 4
    assert np.all(first[late] <= len(p.dates) // 2)
    assert not traded[late][:, 0].any()
    # gaps after listing are suspensions, of 1-5 days
    gaps = []
    for i in range(len(p.stocks)):
        idx = np.nonzero(traded[i])[0]
        gaps.extend((np.diff(idx) - 1)[np.diff(idx) > 1].tolist())
    assert len(gaps) > 10
    assert max(gaps) <= 10  # runs of <= 5 days; two runs may touch

    one = SyntheticSource(n_stocks=2, start="2022-01-03", end="2022-12-30", late_listing_share=0.01).load()
    assert (one.traded.argmax(axis=1) > 0).sum() == 1  # at least one late listing when share > 0
    none = SyntheticSource(n_stocks=10, start="2022-01-03", end="2022-12-30", late_listing_share=0.0,
                           suspension_rate=0.0).load()  # fmt: skip
    assert none.traded.all()


def test_volume_rises_with_big_moves() -> None:
    p = load()
    corr = []
    for i, (idx, r) in enumerate(consecutive_log_returns(p)):
        corr.append(np.corrcoef(np.abs(r), np.log(p.prices["volume"][i, idx[1:]]))[0, 1])
    assert np.mean(corr) > 0.2


# ---------------------------------------------------------------- stylized facts


def test_fat_tails_and_volatility_clustering() -> None:
    p = load()
    kurt, acf = [], []
    for _, r in consecutive_log_returns(p):
        z = (r - r.mean()) / r.std()
        kurt.append(np.mean(z**4) - 3.0)
        a = np.abs(r) - np.abs(r).mean()
        acf.append(np.mean(a[1:] * a[:-1]) / np.mean(a * a))
    assert np.median(kurt) > 1.0
    assert np.mean(acf) > 0.03
    assert np.mean(np.array(acf) > 0) > 0.8


def test_volatility_level_varies_across_stocks() -> None:
    vols = np.array([r.std() for _, r in consecutive_log_returns(load())])
    assert 0.007 < vols.min() and vols.max() < 0.06
    assert vols.max() / vols.min() > 2


# ---------------------------------------------------------------- planted signals


def test_price_signal_strength() -> None:
    acc = price_reversal_accuracy(load(**SIGNAL_ARGS, price_signal=0.5, news_signal=0.0))
    assert acc > 0.68, acc  # Bayes ceiling ~0.75
    assert acc < 0.82, acc


def test_news_signal_strength() -> None:
    p = load(**SIGNAL_ARGS, price_signal=0.0, news_signal=0.5)
    acc = news_accuracy(p)
    assert acc > 0.68, acc  # ~0.9 on polar-news days
    assert abs(price_reversal_accuracy(p) - 0.5) < 0.03


def test_no_signal_is_pure_noise() -> None:
    p = load(**SIGNAL_ARGS, price_signal=0.0, news_signal=0.0)
    assert abs(price_reversal_accuracy(p) - 0.5) < 0.03
    assert abs(news_accuracy(p) - 0.5) < 0.03


def test_news_texts_come_from_templates() -> None:
    for lang in ("zh", "en"):
        p = SyntheticSource(n_stocks=5, start="2022-01-03", end="2022-03-31", language=lang).load()
        pol = template_polarity(p.news_text)
        assert {-1, 0, 1} <= set(pol.tolist())
        neutral = [t for t, q in zip(p.news_text, pol) if q == 0]
        assert any(t.startswith(tuple(p.stocks)) for t in neutral)
    assert all(len(TEMPLATES[lang][q]) >= 8 for lang in TEMPLATES for q in (-1, 0, 1))


def test_polar_days_always_have_news() -> None:
    p = load(**SIGNAL_ARGS, price_signal=0.0, news_signal=0.5, news_per_day=0.0)
    # with no background news every text is the forced one of a polar day: one per polar day
    pol = template_polarity(p.news_text)
    assert np.all(pol != 0)
    cells = p.news_stock * len(p.dates) + np.searchsorted(p.dates, p.news_date)
    assert len(np.unique(cells)) == len(cells)
    share = len(cells) / p.traded.sum()
    assert abs(share - 0.6) < 0.02


# ---------------------------------------------------------------- argument validation


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        (dict(n_stocks=0), "n_stocks"),
        (dict(n_stocks=2.5), "n_stocks"),
        (dict(seed=-1), "seed"),
        (dict(start="not a date"), "start"),
        (dict(start="2022-01-03", end="2022-01-03"), "end"),
        (dict(start="2022-01-08", end="2022-01-09"), "business days"),
        (dict(price_signal=-0.1), "price_signal"),
        (dict(news_signal=1.0), "news_signal"),
        (dict(price_signal=0.6, news_signal=0.4), "price_signal + news_signal"),
        (dict(news_per_day=-1), "news_per_day"),
        (dict(news_per_day=float("nan")), "news_per_day"),
        (dict(late_listing_share=1.5), "late_listing_share"),
        (dict(suspension_rate=0.9), "suspension_rate"),
        (dict(language="fr"), "language"),
    ],
)
def test_invalid_args_raise(kwargs: dict[str, object], arg: str) -> None:
    with pytest.raises(ValueError, match=arg.replace("+", r"\+")):
        SyntheticSource(**kwargs)
