"""The StockNet evaluation protocol (conf/dataset/acl18_stocknet.yaml): texts of non-trading days
inform the trading day before them, a sample sees only the texts of the 5 calendar days before its
target day, and a sample is kept only if every lag step has a text; on the real ACL18 data it
selects stocknet-code's samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lightquant.data import build_market_data
from lightquant.data.panel import Panel
from lightquant.training import build_data

FEATURES = ["close"]
SPLITS = {"train_end": "2022-02-28", "val_end": "2022-03-31"}
STOCKNET = {"news_alignment": "previous", "text_lag_days": 5, "require_text_days": True}


def panel(text_days: list[str]) -> Panel:
    """One stock on business days of 2022 H1 moving +-1 % in turn (every day labelled), one text on
    each of ``text_days`` (calendar days, weekends included)."""
    dates = pd.bdate_range("2022-01-03", "2022-06-30").values.astype("datetime64[D]")
    close = 10 * np.cumprod(np.where(np.arange(len(dates)) % 2, 1.01, 0.99))[None]
    prices = {f: close.copy() for f in ("open", "high", "low", "close", "adj_close")}
    prices["volume"] = np.ones_like(close)
    days = np.array(text_days, dtype="datetime64[D]")
    return Panel(["s0"], dates, prices, np.zeros(len(days), dtype=np.int64), days, [f"text of {d}" for d in text_days])


def every_day(start: str = "2021-12-20", end: str = "2022-07-05") -> list[str]:
    return [str(d.date()) for d in pd.date_range(start, end)]


def build(p: Panel, **kw):
    return build_market_data(p, features=FEATURES, look_back_window=5, splits=SPLITS, up_threshold=0.0055,
                             down_threshold=-0.005, **kw)


def row_of(data, day: str) -> int:
    return int(np.flatnonzero(data.dates[data.row_day.numpy()] == np.datetime64(day))[0])


def test_previous_alignment_gives_weekend_texts_to_friday():
    p = panel(["2022-01-07", "2022-01-08", "2022-01-09", "2022-01-10"])  # Fri, Sat, Sun, Mon
    nxt, prev = build(p), build(p, news_alignment="previous")
    assert nxt.texts(row_of(nxt, "2022-01-07")) == ["text of 2022-01-07"]
    assert nxt.texts(row_of(nxt, "2022-01-10")) == ["text of 2022-01-08", "text of 2022-01-09", "text of 2022-01-10"]
    assert prev.texts(row_of(prev, "2022-01-07")) == ["text of 2022-01-07", "text of 2022-01-08", "text of 2022-01-09"]
    assert prev.texts(row_of(prev, "2022-01-10")) == ["text of 2022-01-10"]
    with pytest.raises(ValueError, match="news_alignment"):
        build(p, news_alignment="nearest")


def test_a_sample_sees_exactly_the_texts_of_the_lag_window():
    data = build(panel(every_day()), **STOCKNET)
    day = data.news_day[: len(data.news_text)].numpy()  # each text's day number: its embedding
    data = data.with_news(day[:, None].astype(np.float32), max_texts=10)
    for split in ("train", "val", "test"):
        s = data.splits[split]
        b = data.batch(split, torch.arange(len(s)))
        target = data.day_number[data.row_day[s.end_row + 1]]  # (N,) day d of each label
        seen = b.news[..., 0]  # (N, T, K) the day of each visible text
        for i in range(len(s)):
            got = sorted(seen[i][b.news_mask[i]].long().tolist())
            assert got == list(range(int(target[i]) - 5, int(target[i]))), (split, i)  # d-5 .. d-1, each once


def test_samples_need_a_text_for_every_lag_step():
    days = [d for d in every_day() if d != "2022-02-09"]  # no text on Wednesday 9 February
    full, gap = build(panel(every_day()), **STOCKNET), build(panel(days), **STOCKNET)

    def targets(data):
        out = set()
        for s in data.splits.values():
            out |= {str(d) for d in data.dates[data.row_day[s.end_row + 1].numpy()]}
        return out

    # Wednesday's row feeds the step of Thursday 10 Feb, a lag step of targets Thu 10, Fri 11, Mon 14
    assert targets(full) - targets(gap) == {"2022-02-10", "2022-02-11", "2022-02-14"}
    plain = build(panel(days))  # the standard protocol keeps them all
    assert sum(len(s) for s in plain.splits.values()) == sum(len(s) for s in full.splits.values())


def test_protocol_settings_are_checked():
    p = panel(every_day())
    with pytest.raises(ValueError, match="needs dataset.text_lag_days"):
        build(p, require_text_days=True)
    with pytest.raises(ValueError, match="look_back_window"):
        build_market_data(p, features=FEATURES, look_back_window=3, splits=SPLITS, text_lag_days=5,
                          require_text_days=True)
    with pytest.raises(ValueError, match="text_lag_days"):
        build(p, text_lag_days=0)
    with pytest.raises(ValueError, match="no texts"):
        build(panel([]), **STOCKNET)


def test_acl18_stocknet_protocol_selects_stocknet_codes_samples(cfg_factory, acl18_root):
    """stocknet-code keeps about 4,990 / 656 / 1,008 samples, its test subset 579 / 1,008 = 57.44 % up.
    Here 4,985 / 650 / 1,008 with 580 up: it reads price/preprocessed (movements rounded in the file)
    where this project reads price/raw, which moves a handful of returns across the thresholds."""
    data = build_data(cfg_factory(["dataset=acl18_stocknet", f"dataset.root={acl18_root}"], tiny=False))
    counts = {k: len(s) for k, s in data.splits.items()}
    assert counts == {"train": 4985, "val": 650, "test": 1008}
    for k, n in {"train": 4990, "val": 656, "test": 1008}.items():
        assert abs(counts[k] - n) <= 0.01 * n
    assert data.splits["test"].y.mean().item() == pytest.approx(579 / 1008, abs=0.002)
