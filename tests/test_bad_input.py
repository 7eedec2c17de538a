"""Bad input gets one clear error (or a documented, counted repair), never a traceback wall,
a NaN in a tensor, or half-written output."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from hydra.errors import HydraException

from lightquant.data.acl18 import ACL18Source
from lightquant.data.csmd import CSMDSource
from lightquant.data.prices import DataError, read_price_csv
from lightquant.errors import ConfigError
from lightquant.training import build_data, train

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume"


def bars(n: int = 300, seed: int = 0, start: str = "2020-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    open_ = close * np.exp(rng.normal(0, 0.005, n))
    return pd.DataFrame({
        "Date": pd.bdate_range(start, periods=n).strftime("%Y-%m-%d"), "Open": open_,
        "High": np.maximum(open_, close) * 1.01, "Low": np.minimum(open_, close) * 0.99,
        "Close": close, "Adj Close": close, "Volume": rng.integers(1000, 5000, n),
    })


@pytest.fixture
def folder(tmp_path):
    """A valid `dataset=csv` folder with 3 stocks; tests then break one thing."""
    root = tmp_path / "prices"
    root.mkdir()
    for i, name in enumerate(["AAA", "BBB", "CCC"]):
        bars(seed=i).to_csv(root / f"{name}.csv", index=False)
    return root


def csv_cfg(cfg_factory, root, *overrides):
    return cfg_factory(["dataset=csv", f"dataset.root={root}", "trainer.epochs=1", "model.hidden_size=8",
                        "trainer.device=cpu", *overrides], tiny=False)


def load(root):
    return CSMDSource([str(root)]).load()


# --------------------------------------------------------------- data: rejected
@pytest.mark.parametrize(
    "content,match",
    [
        ("Date,Open,High,Low,Volume\n2020-01-01,1,1,1,5\n", r"missing column\(s\) \['Close'\]"),
        ("", "empty file"),
        (f"{HEADER}\n2020-01-01,1,1,1,1,1,5\nnot-a-date,1,1,1,1,1,5\n" + "2020-01-03,1,1,1,1,1,5\n" * 200,
         "row 3: date 'not-a-date'"),
        (f"{HEADER}\nyesterday,1,1,1,1,1,5\n", "no dates in a known format"),
        (f"{HEADER}\n2020-01-01,0,0,0,0,0,5\n", "no usable rows"),
    ],
    ids=["missing-column", "empty-file", "bad-date-row", "unknown-date-format", "no-usable-rows"],
)
def test_bad_price_file_is_rejected_naming_the_file(folder, content, match):
    (folder / "BBB.csv").write_text(content)
    with pytest.raises(DataError, match=match) as e:
        load(folder)
    assert "BBB.csv" in str(e.value)


def test_undecodable_file_is_rejected(folder):
    (folder / "BBB.csv").write_bytes(b"\xff\xfe\x00\x81\x82" * 50)
    with pytest.raises(DataError, match="BBB.csv: not UTF-8 or GBK"):
        load(folder)


def test_missing_root_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="LIGHTQUANT_DATA"):
        CSMDSource([str(tmp_path / "nowhere")]).load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No price files"):
        CSMDSource([str(tmp_path / "empty")]).load()


# ---------------------------------------------------------------- data: repaired
def _rewrite(folder, fn):
    df = bars(seed=1)
    df = fn(df)
    df.to_csv(folder / "BBB.csv", index=False)


@pytest.mark.parametrize(
    "edit,warning",
    [
        (lambda d: d.assign(Close=d.Close.astype(object).where(d.index != 5, "abc")), "1 non-numeric close cells"),
        (lambda d: d.astype(object).where(np.c_[np.ones(len(d), bool), np.repeat((d.index != 7)[:, None], 6, axis=1)],
                                          "null"), "rows with missing"),  # ACL18-style: a date, then nulls
        (lambda d: pd.concat([d, d.iloc[[10]]]), "1 duplicate dates"),
        (lambda d: d.iloc[::-1], "out of date order"),
        (lambda d: d.assign(Close=d.Close.where(d.index != 9, -1.0)), "zero or negative"),
        (lambda d: d.assign(High=d.High.where(d.index != 11, d.Low * 0.5)), "high/low widened"),
    ],
    ids=["non-numeric", "null-row", "duplicate-date", "descending", "negative-price", "ohlc-inconsistent"],
)
def test_repairable_problems_are_repaired_and_counted(folder, caplog, edit, warning):
    _rewrite(folder, edit)
    with caplog.at_level(logging.WARNING):
        panel = load(folder)
    assert any("BBB.csv" in r.message and warning in r.message for r in caplog.records), caplog.text
    i = panel.stocks.index("BBB")
    traded = panel.traded[i]
    for f in ("open", "high", "low", "close", "volume"):
        assert np.isfinite(panel.prices[f][i][traded]).all()
    assert (panel.prices["low"][i][traded] <= panel.prices["close"][i][traded]).all()
    assert (panel.prices["close"][i][traded] > 0).all()
    assert np.all(np.diff(panel.dates.astype(np.int64)) > 0)


@pytest.mark.parametrize(
    "rename,date_fmt",
    [({"Date": "date", "Adj Close": "adj_close", "Volume": "vol"}, "%Y-%m-%d"),
     ({"Date": "TRADE_DATE", "Close": "close"}, "%m/%d/%Y"),
     ({}, "%Y%m%d")],
    ids=["lowercase-aliases", "us-dates", "compact-dates"],
)
def test_other_spellings_and_date_formats_load(folder, rename, date_fmt):
    df = bars(seed=1)
    df["Date"] = pd.to_datetime(df.Date).dt.strftime(date_fmt)
    df = df.rename(columns=rename)[list(reversed(df.rename(columns=rename).columns))]  # any column order
    df.to_csv(folder / "BBB.csv", index=False)
    panel = load(folder)
    ref = read_price_csv(folder / "AAA.csv")
    assert panel.traded[panel.stocks.index("BBB")].sum() == len(ref)


def test_gbk_encoded_file_with_chinese_header_loads(folder):
    df = bars(seed=1).rename(columns={"Date": "日期", "Open": "开盘", "High": "最高", "Low": "最低",
                                      "Close": "收盘", "Volume": "成交量"}).drop(columns=["Adj Close"])
    (folder / "BBB.csv").write_bytes(df.to_csv(index=False).encode("gbk"))
    panel = load(folder)
    i = panel.stocks.index("BBB")
    assert panel.traded[i].sum() == 300
    np.testing.assert_allclose(panel.prices["adj_close"][i], panel.prices["close"][i])


# ------------------------------------------------------------------------- news
def test_news_problems(folder, tmp_path, caplog):
    news = tmp_path / "news"
    (news / "AAA").mkdir(parents=True)
    (news / "AAA" / "2020-01-06.csv").write_text("code_name,ticker,created_at,text\nAAA,a,2020-01-06,good news\n")
    (news / "AAA" / "2020-01-07.csv").write_text("")  # empty: skipped, counted
    with caplog.at_level(logging.WARNING):
        panel = CSMDSource([str(folder)], [str(news)]).load()
    assert panel.news_text == ["good news"] and "1 empty news file(s) skipped" in caplog.text
    (news / "AAA" / "2020-01-08.csv").write_text("code_name,ticker,body\nAAA,a,no text column\n")
    with pytest.raises(DataError, match="2020-01-08.csv: news files need a 'text' column"):
        CSMDSource([str(folder)], [str(news)]).load()
    (news / "AAA" / "2020-01-08.csv").unlink()
    (news / "AAA" / "last-friday.csv").write_text("text\nx\n")
    with pytest.raises(DataError, match="last-friday.csv: news file names must be dates"):
        CSMDSource([str(folder)], [str(news)]).load()


def test_malformed_tweet_line_names_file_and_line(folder, tmp_path):
    (tmp_path / "tw" / "AAA").mkdir(parents=True)
    (tmp_path / "tw" / "AAA" / "2020-01-06").write_text('{"text": ["ok"], "created_at": "Mon Jan 06 15:00:00 +0000 2020"}\n{broken\n')
    with pytest.raises(DataError, match=r"2020-01-06:2: not a JSON line"):
        ACL18Source(str(folder), str(tmp_path / "tw")).load()


# ------------------------------------------------------------------ data in runs
def test_stock_shorter_than_the_window_is_skipped_with_a_warning(cfg_factory, folder, caplog):
    bars(n=4, seed=9).to_csv(folder / "TINY.csv", index=False)
    with caplog.at_level(logging.WARNING):
        data = build_data(csv_cfg(cfg_factory, folder))
    assert "TINY" in caplog.text and "give no sample" in caplog.text
    assert not np.isnan(data.features.numpy()).any()


def test_default_splits_are_80_10_10_and_said(cfg_factory, folder, caplog):
    with caplog.at_level(logging.WARNING):
        data = build_data(csv_cfg(cfg_factory, folder))
    assert "last 10% of dates as test" in caplog.text
    n = {k: len(s) for k, s in data.splits.items()}
    assert n["val"] == pytest.approx(n["test"], rel=0.15) and n["train"] > 6 * n["val"]


@pytest.mark.parametrize(
    "override,match",
    [
        ("dataset.splits.val_end=2030-01-01", "dataset.splits must satisfy"),
        ("+dataset.splits.tets_end=2021-01-01", "unknown key"),
        ("dataset.splits.train_end=2020-06-01", "needs both train_end and val_end"),
    ],
    ids=["dates-out-of-order", "typo-in-key", "half-given"],
)
def test_bad_split_settings(cfg_factory, folder, override, match):
    overrides = [override]
    if "val_end" in override:
        overrides.append("dataset.splits.train_end=2020-09-01")
    with pytest.raises(ValueError, match=match):
        build_data(csv_cfg(cfg_factory, folder, *overrides))


def test_a_split_that_ends_up_empty(cfg_factory, folder):
    with pytest.raises(ValueError, match="The test split is empty"):
        # the test period is one Saturday: no trading day, so no sample
        build_data(csv_cfg(cfg_factory, folder, "dataset.splits.train_end=2020-06-01",
                           "dataset.splits.val_end=2020-10-02", "dataset.splits.test_end=2020-10-03"))


# ----------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "overrides,match",
    [
        (["dataset.look_back_window=0"], "dataset.look_back_window=0 must be an integer >= 1"),
        (["dataset.batch_size=0"], "dataset.batch_size=0"),
        (["model.hidden_size=0"], "model.hidden_size=0"),
        (["trainer.lr=0"], "trainer.lr=0"),
        (["trainer.lr=-0.1"], "trainer.lr=-0.1"),
        (["model.dropout=1.0"], r"model.dropout=1.0 must be in \[0, 1\)"),
        (["trainer.epochs=0"], "trainer.epochs=0"),
        (["trainer.num_threads=0"], "trainer.num_threads=0 must be an integer >= 1"),
        (["model=scinet", "model.seq_len=9"], "model.seq_len=9 differs from dataset.look_back_window"),
        (["model=scinet", "model.kernel_size=4"], "kernel_size"),
        (["model=dtml", "model.hidden_size=10"], "divisible by heads"),
        (["model=han"], "use_news=true"),
        (["model=stocknet"], "price-only variant"),
        (["trainer.device=cuda"], "CUDA is not available"),
        (["dataset.features=[close,sentiment]"], "unknown feature"),
        (["dataset.label.down_threshold=0.01"], "down_threshold"),
        (["dataset=csv", "use_news=true", "dataset.root=/tmp"], "has no news folders"),
        (["dataset=acl18", "use_news=true", "dataset.root=/tmp", "dataset.source.tweet_dir=null"],
         "has no tweets: set dataset.source.tweet_dir"),
        (["use_news=true", "dataset.source.n_stocks=0"], "dataset.source: n_stocks"),
    ],
    ids=["window", "batch", "hidden", "lr0", "lr-neg", "dropout", "epochs", "threads", "scinet-seq", "scinet-kernel",
         "dtml-heads", "news-model", "stocknet-news", "cuda", "feature", "thresholds", "news-without-news",
         "tweets-without-tweets", "source-argument"],
)
def test_bad_config_fails_fast_and_writes_nothing(cfg_factory, tmp_path, overrides, match):
    if any("cuda" in o for o in overrides):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError if "cuda" not in overrides[0] else RuntimeError, match=match):
        train(cfg_factory(overrides, tiny=not any(o.startswith("dataset=") for o in overrides)))
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists() and not (run / "checkpoints").exists()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("group", ["model=transformerx", "dataset=csmd3000"])
def test_unknown_model_or_dataset_names_the_choices(cfg_factory, group):
    with pytest.raises(HydraException) as e:
        cfg_factory([group])
    assert group.split("=")[1] in str(e.value) and "Available options" in str(e.value)


def test_csv_dataset_trains_end_to_end(cfg_factory, folder, tmp_path):
    m = train(csv_cfg(cfg_factory, folder))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test"]["n"] == m["test"]["n"] > 0


@pytest.mark.parametrize(
    "override,match",
    [
        ("+trainer.epoch=3", r"trainer\.epoch: unknown key; the keys there are epochs, early_stopping"),
        ("trainer.epochs=ten", r"trainer\.epochs: Value 'ten' of type 'str' could not be converted to Integer"),
        ("+trainer.early_stopping.patient=3", r"trainer\.early_stopping\.patient: unknown key; the keys there are monitor, mode"),
        ("trainer.early_stopping.monitor=val/acc", r"trainer\.early_stopping\.monitor='val/acc'.*val/<metric>"),
        ("+dataset.look_back=5", r"dataset\.look_back: unknown key; the keys there are name, source, features"),
        ("dataset.batch_size=1.5", r"dataset\.batch_size: Value '1.5' of type 'float' could not be converted"),
    ],
    ids=["trainer-typo", "trainer-type", "nested-typo", "monitor", "dataset-typo", "dataset-type"],
)
def test_typed_settings_name_the_key_before_any_work(cfg_factory, tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        train(cfg_factory([override]))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_trainer_settings_check_themselves_outside_hydra():
    """A notebook's TrainerSettings get the checks a config does."""
    from lightquant.settings import EarlyStoppingSettings, PenaltySettings, TrainerSettings

    assert TrainerSettings(precision=32).precision == "32"  # YAML's 32 is an int
    with pytest.raises(ConfigError, match="trainer.shuffle='daily'; choose one of"):
        TrainerSettings(shuffle="daily")
    with pytest.raises(ConfigError, match="trainer.early_stopping.mode='up'"):
        TrainerSettings(early_stopping=EarlyStoppingSettings(mode="up"))
    with pytest.raises(ConfigError, match="needs trainer.penalty.params"):
        TrainerSettings(penalty=PenaltySettings(weight=1.0))
