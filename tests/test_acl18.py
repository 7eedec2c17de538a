"""The ACL18/StockNet dataset: layout, tweet dating, the standard protocol's sample counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lightquant.data.acl18 import ACL18Source
from lightquant.training import build_data, train


def test_standard_protocol_sample_counts(cfg_factory, acl18_root):
    # The literature reports about 20.3k / 2.6k / 3.7k samples for this protocol.
    data = build_data(cfg_factory(["dataset=acl18", f"dataset.root={acl18_root}"], tiny=False))
    counts = {k: len(s) for k, s in data.splits.items()}
    assert counts == {"train": 20340, "val": 2555, "test": 3720}
    assert len(data.stocks) == 88 and data.news_text == []  # a price-only run leaves the tweets on disk
    ret, y = data.splits["train"].ret, data.splits["train"].y
    assert bool(((ret >= 0.0055) == (y == 1)).all()) and bool(((ret < -0.005) | (ret >= 0.0055)).all())
    train_days = data.dates[data.row_day[data.splits["train"].end_row].numpy()]
    assert train_days.min() >= np.datetime64("2013-12-01")  # inputs before 2014 only feed early windows


def test_null_rows_and_tweets(acl18_root):
    panel = ACL18Source(str(acl18_root / "price" / "raw"), str(acl18_root / "tweet" / "preprocessed")).load()
    i = panel.stocks.index("PTR")
    raw = (acl18_root / "price" / "raw" / "PTR.csv").read_text().splitlines()
    n_null = sum("null" in line for line in raw)
    assert n_null > 0 and panel.traded[i].sum() == len(raw) - 1 - n_null
    assert "GMRE" in panel.stocks and not (panel.news_stock == panel.stocks.index("GMRE")).any()
    # tokens are joined into text; the calendar rule dates a tweet by its UTC day
    aapl = panel.stocks.index("AAPL")
    first = json.loads((acl18_root / "tweet" / "preprocessed" / "AAPL" / "2014-01-02").read_text().splitlines()[0])
    k = panel.news_text.index(" ".join(first["text"]))
    assert panel.news_stock[k] == aapl and panel.news_date[k] == np.datetime64("2014-01-02")


def test_strict_rule_moves_after_close_tweets_to_the_next_day(tmp_path):
    (tmp_path / "price").mkdir()
    (tmp_path / "price" / "X.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n2014-01-02,1,1,1,1,1,10\n2014-01-03,1,1,1,1,1,10\n"
        "2014-01-06,1,1,1,1,1,10\n2014-01-07,null,null,null,null,null,null\n")
    (tmp_path / "tweet" / "X").mkdir(parents=True)
    tweets = [("before close", "Thu Jan 02 20:59:00 +0000 2014"),  # 15:59 New York
              ("after close", "Thu Jan 02 21:01:00 +0000 2014"),  # 16:01 New York
              ("late utc", "Fri Jan 03 02:00:00 +0000 2014")]  # Thu 21:00 New York
    (tmp_path / "tweet" / "X" / "2014-01-02").write_text(
        "\n".join(json.dumps({"text": t.split(), "created_at": c}) for t, c in tweets))
    days = {}
    for rule in ("calendar", "strict"):
        p = ACL18Source(str(tmp_path / "price"), str(tmp_path / "tweet"), tweet_rule=rule).load()
        days[rule] = dict(zip(p.news_text, p.news_date.astype(str)))
        assert len(p.dates) == 3  # the all-null row is not a trading day
    assert days["calendar"] == {"before close": "2014-01-02", "after close": "2014-01-02", "late utc": "2014-01-03"}
    assert days["strict"] == {"before close": "2014-01-02", "after close": "2014-01-03", "late utc": "2014-01-03"}
    with pytest.raises(ValueError, match="tweet_rule"):
        ACL18Source(str(tmp_path / "price"), tweet_rule="nyc")


@pytest.mark.slow
def test_stocknet_trains_on_acl18_with_tweets(cfg_factory, acl18_root, tmp_path):
    cfg = cfg_factory(["dataset=acl18", f"dataset.root={acl18_root}", "model=stocknet", "use_news=true",
                       "trainer.epochs=1", "trainer.device=cpu", "model.hidden_size=16", "encoder.dim=16",
                       "dataset.max_num_tweets_len=5"], tiny=False)
    m = train(cfg)
    assert m["test"]["n"] == 3720
