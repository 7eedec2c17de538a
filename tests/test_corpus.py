"""The bad-input corpus: every case a small generated input (a csv folder with one thing broken, or
a config override) and its expected outcome: a repair with its count in the log, or an error of
the project's own types (one line at the entry points) containing given words. Grow it with every
bug found: add a case, not a test."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from lightquant.config_check import validate_config
from lightquant.errors import ConfigError, DataError, MissingPathError
from lightquant.training import build_data

from .test_bad_input import bars


def write(folder, frames: dict[str, pd.DataFrame]) -> None:
    folder.mkdir(exist_ok=True)
    for name, df in frames.items():
        df.to_csv(folder / f"{name}.csv", index=False)


def good() -> dict[str, pd.DataFrame]:
    return {n: bars(seed=i) for i, n in enumerate(["AAA", "BBB", "CCC"])}


def duplicate_close(frames):
    frames["AAA"]["close"] = frames["AAA"]["Close"]


def huge_price(frames):
    frames["AAA"].loc[100, ["Open", "High", "Low", "Close", "Adj Close"]] = 1e300


def year_2099(frames):
    row = frames["AAA"].iloc[[-1]].copy()
    row["Date"] = "2099-01-02"
    frames["AAA"] = pd.concat([frames["AAA"], row], ignore_index=True)


def split_10x(frames):
    df = frames["AAA"]
    cols = ["Open", "High", "Low", "Close", "Adj Close"]
    df.loc[:149, cols] *= 10  # before row 150 prices are 10x: an unadjusted 10:1 split


DATA_CASES = {  # name: (break the folder, overrides, expected error type or None, words in the message or log)
    "duplicate columns": (duplicate_close, [], DataError, ["AAA.csv", "'Close' and 'close' both read as close"]),
    "extreme magnitude": (huge_price, [], DataError, ["AAA.csv", "above 1e+09", "corrupt cell"]),
    "row dated 2099": (year_2099, [], None, ["AAA.csv: repaired", "1 rows dated after today, e.g. 2099-01-02"]),
    "unadjusted split, stop": (split_10x, ["dataset.on_jump=error"], DataError, ["AAA on 2020-07-29", "x0.0994", "dataset.on_jump"]),
    "unadjusted split, warn": (split_10x, [], None, ["1 one-day close move(s) beyond x3", "AAA on", "kept"]),
    "unadjusted split, adjust": (split_10x, ["dataset.on_jump=adjust"], None, ["earlier prices rescaled"]),
    "one class": (None, ["dataset.label.up_threshold=-0.5", "dataset.label.down_threshold=-0.6"], ConfigError,
                  ["every train label is up", "dataset.label.up_threshold=-0.5"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data(case, cfg_factory, tmp_path, caplog):
    breaker, overrides, error, words = DATA_CASES[case]
    frames = good()
    if breaker:
        breaker(frames)
    write(tmp_path / "prices", frames)
    cfg = cfg_factory(["dataset=csv", f"dataset.root={tmp_path}", f"dataset.price_dirs=[{tmp_path / 'prices'}]",
                       *overrides], tiny=False)
    if error is not None:
        with pytest.raises(error) as e:
            build_data(cfg)
        assert all(w in str(e.value) for w in words), str(e.value)
        return
    with caplog.at_level(logging.WARNING):
        data = build_data(cfg)
    assert all(w in caplog.text for w in words), caplog.text
    if case.startswith("unadjusted split"):  # kept, the jump is a 20-sigma feature; adjusted, it is gone
        assert (float(data.features.abs().max()) > 20) == case.endswith("warn")


CONFIG_CASES = {  # override: words of the ConfigError
    "trainer.gradient_clip_val=-1": ["trainer.gradient_clip_val=-1", "> 0"],
    "seed=abc": ["seed='abc'", "integer"],
    "dataset.name=../evil": ["dataset.name='../evil'", "no path separators"],
    "model_name=a/b": ["model_name='a/b'"],
    "trainer.loss=mse": ["trainer.loss='mse'", "hinge"],
    "trainer.shuffle=daily": ["trainer.shuffle='daily'", "repeat"],
    "trainer.precision=fp8": ["trainer.precision='fp8'", "bf16"],
    "trainer.early_stopping.monitor=mcc": ["monitor='mcc'", "val/<metric>"],
    "trainer.early_stopping.mode=up": ["mode='up'", "max"],
    "backtest.strategy=top_k": ["backtest.strategy='top_k'", "long_only"],
    "backtest.hold_days=0": ["backtest.hold_days=0", ">= 1"],
    "backtest.benchmark=/no/index.csv": ["backtest.benchmark='/no/index.csv'", "equal_weight"],
    "dataset.market.limit_pct=10": ["dataset.market.limit_pct=10", "fraction"],
    "trainer.device=gpu": ["trainer.device='gpu'", "cuda"],
    "+dataset.news_alignment=before": ["dataset.news_alignment='before'", "previous"],
    "dataset.on_jump=fix": ["dataset.on_jump='fix'", "adjust"],
    "dataset.label.price=vwap": ["dataset.label.price='vwap'", "adj_close"],
    "use_news=true encoder.analyzer=chars": ["encoder.analyzer='chars'", "word"],
    "tracker.mode=online2": ["tracker.mode='online2'", "offline"],
    "trainer.weight_decay=-1": ["trainer.weight_decay=-1", ">= 0"],
    "trainer.penalty.weight=-1": ["trainer.penalty.weight=-1", ">= 0"],
    "optimized_metric=mcc": ["optimized_metric='mcc'", "val/mcc"],
    "optimized_metric=val/mmc": ["optimized_metric='val/mmc'", "'rank_ic'", "'auc'"],
    "trainer.early_stopping.monitor=val/auc": ["monitor='val/auc'", "'rank_ic_ir'"],
    "dataset.label.down_threshold=0.1": ["down_threshold=0.1", "up_threshold"],
}


@pytest.mark.parametrize("override", list(CONFIG_CASES))
def test_bad_config(override, cfg_factory):
    with pytest.raises(ConfigError) as e:
        validate_config(cfg_factory(override.split()))
    assert all(w in str(e.value) for w in CONFIG_CASES[override]), str(e.value)


NEWS_HEADER = "code_name,ticker,created_at,text\n"
NEWS_CASES = {  # news file content: words of the DataError (file:line and the cause)
    "unclosed quote to the end": NEWS_HEADER + 'A,1,2020-01-02,"first text\nA,1,2020-01-02,second text\n',
    "unclosed quote then a quote": NEWS_HEADER + 'A,1,2020-01-02,"first text\nA,1,2020-01-02,"second" text\n',
    "too many fields": NEWS_HEADER + "A,1,2020-01-02,text,extra\n",
    "a field over csv's size limit": NEWS_HEADER + 'A,1,2020-01-02,"' + "x" * 200_000 + '"\n',
}


@pytest.mark.parametrize("case", list(NEWS_CASES))
def test_malformed_news_files_name_file_and_line(case, tmp_path):
    from lightquant.data.csmd import CSMDSource

    write(tmp_path / "price", {"AAA": bars()})
    news = tmp_path / "news" / "AAA"
    news.mkdir(parents=True)
    (news / "2020-01-02.csv").write_text(NEWS_CASES[case])
    with pytest.raises(DataError, match=r"2020-01-02\.csv:\d+: .*quoting of that row"):
        CSMDSource([str(tmp_path / "price")], [str(tmp_path / "news")]).load()


def test_well_formed_news_with_quoted_newlines_loads(tmp_path):
    from lightquant.data.csmd import CSMDSource

    write(tmp_path / "price", {"AAA": bars()})
    news = tmp_path / "news" / "AAA"
    news.mkdir(parents=True)
    (news / "2020-01-02.csv").write_text(NEWS_HEADER + 'A,1,2020-01-02,"two\nlines, one text"\nA,1,2020-01-02,plain\n')
    panel = CSMDSource([str(tmp_path / "price")], [str(tmp_path / "news")]).load()
    assert panel.news_text == ["two\nlines, one text", "plain"]


def test_looping_links_are_named(cfg_factory, tmp_path):
    """A price file or a data folder that is a looping symbolic link: the path named, not a raw OSError."""
    write(tmp_path / "prices", good())
    loop = tmp_path / "prices" / "DDD.csv"
    loop.symlink_to(loop)
    cfg = cfg_factory(["dataset=csv", f"dataset.root={tmp_path}", f"dataset.price_dirs=[{tmp_path / 'prices'}]"],
                      tiny=False)
    with pytest.raises(DataError, match="DDD.csv: cannot be read .*looping symbolic link"):
        build_data(cfg)
    folder = tmp_path / "loop"
    folder.symlink_to(folder)
    cfg = cfg_factory(["dataset=csv", f"dataset.root={tmp_path}", f"dataset.price_dirs=[{folder}]"], tiny=False)
    with pytest.raises(MissingPathError, match="loop is a broken or looping symbolic link"):
        build_data(cfg)


def test_horizons_longer_than_a_split_are_refused(cfg_factory):
    cfg = cfg_factory(["model=scinet", "model.pred_len=80"])  # the tiny market's val split has ~64 trading days
    with pytest.raises(ConfigError, match=r"model.pred_len=80 is longer than the val split's \d+ trading days"):
        build_data(cfg)
