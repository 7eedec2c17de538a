"""The CSMD loader on the real 10-stock CSMD50 sample (read-only; skipped when absent).

Expected values come from the dataset's README and from the raw files read here with
the csv module, independently of the loader. Anything that must be changed is first
copied into tmp_path: the shared data folder is never written.
"""

from __future__ import annotations

import csv
import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lightquant.data.cache import cached_panel
from lightquant.data.csmd import CSMDSource
from lightquant.data.market import build_market_data
from lightquant.data.panel import PRICE_FIELDS, Panel

BOM = b"\xef\xbb\xbf"
PUBLISHER = dict(
    features=["open", "high", "low", "close", "volume"],
    look_back_window=7,
    splits={"train_start": None, "train_end": "2024-03-14", "val_end": "2024-08-07", "test_end": None},
    label_price="close",
    up_threshold=1e-9,
    down_threshold=1e-9,
)
COLUMNS = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
FIELD_OF = dict(zip(COLUMNS[1:], ["open", "high", "low", "close", "adj_close", "volume"]))


@functools.lru_cache(maxsize=None)
def _load(root: str) -> Panel:
    return CSMDSource([f"{root}/price"], [f"{root}/news"]).load()


def load(root: Path) -> Panel:
    return _load(str(root))


def read_price_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def read_news_csv(path: Path) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return [t.strip() for t in (r.get("text") or "" for r in csv.DictReader(fh)) if t.strip()]


def is_weekend(day: np.datetime64) -> bool:
    return int((day.astype("datetime64[D]").astype(np.int64) - 4) % 7) >= 5  # 1970-01-05 was a Monday


def snapshot(root: Path) -> dict[str, tuple]:
    out = {".": (True, root.stat().st_mtime_ns)}
    for p in root.rglob("*"):
        st = p.stat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size if p.is_file() else 0, st.st_mtime_ns)
    return out


def copy_stocks(root: Path, dst: Path, stocks: list[str], news: bool = True) -> Path:
    """Writable copies of a few stocks' files (plain copies: the originals are read-only)."""
    (dst / "price").mkdir(parents=True)
    (dst / "news").mkdir()
    for s in stocks:
        shutil.copyfile(root / "price" / f"{s}.csv", dst / "price" / f"{s}.csv")
        if news and (root / "news" / s).is_dir():
            (dst / "news" / s).mkdir()
            for f in (root / "news" / s).iterdir():
                shutil.copyfile(f, dst / "news" / s / f.name)
    return dst


def source(root: Path, news: bool = True) -> CSMDSource:
    return CSMDSource([str(root / "price")], [str(root / "news")] if news else None)


def assert_same_prices(a: Panel, b: Panel) -> None:
    assert a.stocks == b.stocks
    np.testing.assert_array_equal(a.dates, b.dates)
    for f in PRICE_FIELDS:
        np.testing.assert_array_equal(a.prices[f], b.prices[f], err_msg=f)


# ---------------------------------------------------------------- the sample as published


def test_loads_the_ten_stock_sample(csmd50_root: Path) -> None:
    p = load(csmd50_root)
    files = sorted((csmd50_root / "price").glob("*.csv"))
    assert len(p.stocks) == 10 and p.stocks == sorted(f.stem for f in files)
    assert p.dates.dtype == np.dtype("datetime64[D]") and len(p.dates) == 969
    assert str(p.dates[0]) == "2021-01-04" and str(p.dates[-1]) == "2024-12-31"
    traded = p.traded
    for i, s in enumerate(p.stocks):
        first = p.dates[np.argmax(traded[i])]
        if s == "海光信息":
            assert str(first) == "2022-08-12"
            assert traded[i].sum() == 579
            before = p.dates < np.datetime64("2022-08-12")
            for f in PRICE_FIELDS:
                assert np.isnan(p.prices[f][i, before]).all(), f
        else:
            assert traded[i].all(), s  # full history: a bar on each of the 969 days
    for f in PRICE_FIELDS:
        assert (p.prices[f][traded] > 0).all(), f
        np.testing.assert_array_equal(np.isfinite(p.prices[f]), traded, err_msg=f)
    np.testing.assert_array_equal(p.prices["adj_close"], p.prices["close"])  # unadjusted, per the README


def test_bom_and_values_match_the_raw_files(csmd50_root: Path, tmp_path: Path) -> None:
    p = load(csmd50_root)
    for f in sorted((csmd50_root / "price").glob("*.csv")):
        raw = f.read_bytes()
        assert raw.startswith(BOM + b"Date,"), f.name  # the published files do carry a BOM
        rows = read_price_csv(f)
        i = p.stocks.index(f.stem)
        for rec in (rows[0], rows[len(rows) // 2], rows[-1]):
            d = int(np.searchsorted(p.dates, np.datetime64(rec["Date"], "D")))
            assert str(p.dates[d]) == rec["Date"]
            for col, field in FIELD_OF.items():
                assert p.prices[field][i, d] == float(rec[col]), (f.stem, rec["Date"], col)
    # the same file without the BOM reads the same
    src = csmd50_root / "price" / "海光信息.csv"
    (tmp_path / "price").mkdir()
    (tmp_path / "price" / "海光信息.csv").write_bytes(src.read_bytes()[len(BOM):])
    q = CSMDSource([str(tmp_path / "price")]).load()
    i = p.stocks.index("海光信息")
    traded = p.traded[i]
    np.testing.assert_array_equal(q.dates, p.dates[traded])
    for f in PRICE_FIELDS:
        np.testing.assert_array_equal(q.prices[f][0], p.prices[f][i, traded])


def test_news_texts_are_loaded(csmd50_root: Path) -> None:
    p = load(csmd50_root)
    files = sorted((csmd50_root / "news").glob("*/*.csv"))
    expected = sum(len(read_news_csv(f)) for f in files)
    assert len(p.news_text) == expected > 1000
    assert len(p.news_stock) == len(p.news_date) == expected
    assert p.news_date.dtype == np.dtype("datetime64[D]")
    assert all(t and t == t.strip() for t in p.news_text)
    cjk = sum(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in p.news_text)
    assert cjk > 0.9 * len(p.news_text)
    # every text is filed under its own stock and date
    by_file = {(f.parent.name, f.stem): read_news_csv(f) for f in files}
    got: dict[tuple[str, str], list[str]] = {}
    for s, d, t in zip(p.news_stock.tolist(), p.news_date, p.news_text):
        got.setdefault((p.stocks[s], str(d)), []).append(t)
    assert got == {k: v for k, v in by_file.items() if v}


def test_weekend_news_attaches_to_the_stocks_next_trading_day(csmd50_root: Path) -> None:
    p = load(csmd50_root)
    md = build_market_data(p, **PUBLISHER)
    row_of = {(int(s), int(d)): r for r, (s, d) in enumerate(zip(md.row_stock.tolist(), md.row_day.tolist()))}
    weekend_files = [f for f in sorted((csmd50_root / "news").glob("*/*.csv")) if is_weekend(np.datetime64(f.stem))]
    assert weekend_files, "the sample has news files dated on weekends"
    checked = 0
    for f in weekend_files:
        texts = read_news_csv(f)
        s = p.stocks.index(f.parent.name)
        day = np.datetime64(f.stem, "D")
        later = np.nonzero(p.traded[s] & (p.dates >= day))[0]
        if not len(later) or not texts:
            continue
        target = int(later[0])
        assert p.dates[target] > day and not is_weekend(p.dates[target])
        attached = md.texts(row_of[(s, target)])
        assert all(t in attached for t in texts), f
        checked += 1
    assert checked >= 10
    # e.g. 交通银行's Saturday 2021-05-29 news goes to Monday 2021-05-31
    f = csmd50_root / "news" / "交通银行" / "2021-05-29.csv"
    if f.exists():
        s = p.stocks.index("交通银行")
        monday = int(np.searchsorted(p.dates, np.datetime64("2021-05-31")))
        assert str(p.dates[monday]) == "2021-05-31"
        assert read_news_csv(f)[0] in md.texts(row_of[(s, monday)])
    # nothing is lost: every stock trades on 2024-12-31, the last news date
    assert p.news_date.max() <= p.dates[-1]
    assert len(md.news_text) == len(p.news_text)


def test_publisher_splits_and_flat_days(csmd50_root: Path) -> None:
    p = load(csmd50_root)
    md = build_market_data(p, **PUBLISHER)
    close = p.prices["close"]
    bounds = {
        "train": (p.dates[0], np.datetime64("2024-03-14")),
        "val": (np.datetime64("2024-03-15"), np.datetime64("2024-08-07")),
        "test": (np.datetime64("2024-08-08"), p.dates[-1]),
    }
    flat = 0
    for name, s in md.splits.items():
        assert len(s) > 0, name
        st, d = md.row_stock[s.end_row].numpy(), md.row_day[s.end_row].numpy()
        nxt = np.array([np.nonzero(p.traded[a, b + 1 :])[0][0] + b + 1 for a, b in zip(st, d)])
        lo, hi = bounds[name]
        assert p.dates[nxt].min() >= lo and p.dates[nxt].max() <= hi, name
        ret = close[st, nxt] / close[st, d] - 1.0
        np.testing.assert_array_equal(s.y.numpy(), (ret > 0).astype(np.float32))  # "up" = strictly up
        is_flat = close[st, nxt] == close[st, d]
        assert (s.y.numpy()[is_flat] == 0).all(), "a flat day must be labelled 0 (not up)"
        flat += int(is_flat.sum())
    assert flat > 50  # flat days are common at the 0.01 CNY tick (e.g. 工商银行)
    n = {k: len(v) for k, v in md.splits.items()}
    # nothing dropped with equal thresholds: every stock-day with 7 defined days (a stock's first day
    # has no previous close) and a next day is a sample: rows 7 .. n-2 of each stock
    per_stock = p.traded.sum(axis=1)
    assert sum(n.values()) == int((per_stock - 8).sum())
    assert n["train"] > n["val"] > 0 and n["test"] > 0


# ---------------------------------------------------------------- loader behaviour on copies


def test_fingerprint_follows_the_files(csmd50_root: Path, tmp_path: Path) -> None:
    root = copy_stocks(csmd50_root, tmp_path / "data", ["工商银行", "海光信息"])
    src = source(root)
    fp = src.fingerprint()
    assert fp == source(root).fingerprint()  # stable for unchanged files
    cache = tmp_path / "cache"
    before = cached_panel(src, cache)
    assert before.prices["close"][0, 0] != 1.23

    price = root / "price" / "工商银行.csv"
    lines = price.read_text(encoding="utf-8-sig").splitlines()
    head, first = lines[0].split(","), lines[1].split(",")
    first[head.index("Close")] = "1.23"
    lines[1] = ",".join(first)
    price.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    fp2 = src.fingerprint()
    assert fp2 != fp
    after = cached_panel(src, cache)  # a new key: the changed file is read, not the stale cache
    assert after.prices["close"][p_i(after, "工商银行"), 0] == 1.23

    news = next((root / "news" / "海光信息").glob("*.csv"))
    st = news.stat()
    os.utime(news, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    fp3 = src.fingerprint()
    assert fp3 != fp2
    extra = root / "news" / "海光信息" / "2024-12-28.csv"
    extra.write_text("code_name,ticker,created_at,text\n海光信息,688041,2024-12-28,新增的消息\n", encoding="utf-8")
    fp4 = src.fingerprint()
    assert fp4 != fp3
    assert "新增的消息" in cached_panel(src, cache).news_text
    extra.unlink()
    assert src.fingerprint() == fp3


def p_i(p: Panel, name: str) -> int:
    return p.stocks.index(name)


def test_loading_writes_nothing_into_the_data_folder(csmd50_root: Path, tmp_path: Path) -> None:
    before = snapshot(csmd50_root)
    src = source(csmd50_root)
    src.fingerprint()
    p = src.load()
    cached_panel(src, tmp_path / "cache")
    cached_panel(src, tmp_path / "cache")
    build_market_data(p, **PUBLISHER)
    assert snapshot(csmd50_root) == before
    assert list((tmp_path / "cache" / "panels").glob("*.npz"))


def test_missing_root_says_how_to_point_at_the_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "CSMD50"
    src = source(missing)
    with pytest.raises(FileNotFoundError, match="LIGHTQUANT_DATA"):
        src.load()
    with pytest.raises(FileNotFoundError, match="LIGHTQUANT_DATA"):
        src.fingerprint()
    (missing / "price").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="No price files"):
        source(missing, news=False).load()
    with pytest.raises(TypeError, match="list"):
        CSMDSource(str(missing / "price"))


def test_news_folder_missing_raises_too(csmd50_root: Path, tmp_path: Path) -> None:
    root = copy_stocks(csmd50_root, tmp_path / "d", ["工商银行"], news=False)
    shutil.rmtree(root / "news")
    with pytest.raises(FileNotFoundError, match="LIGHTQUANT_DATA"):
        source(root).load()
    assert len(source(root, news=False).load().news_text) == 0


@pytest.mark.parametrize("column", ["Adj Close", "Volume", "Date"])
def test_price_file_missing_a_column(csmd50_root: Path, tmp_path: Path, column: str) -> None:
    root = copy_stocks(csmd50_root, tmp_path / "d", ["贵州茅台", "工商银行"], news=False)
    bad = root / "price" / "工商银行.csv"
    rows = read_price_csv(bad)
    keep = [c for c in COLUMNS if c != column]
    with open(bad, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keep, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if column == "Adj Close":  # optional: unadjusted prices are taken as adjusted
        panel = source(root, news=False).load()
        i = panel.stocks.index("工商银行")
        np.testing.assert_array_equal(panel.prices["adj_close"][i], panel.prices["close"][i])
        return
    with pytest.raises(ValueError) as e:
        source(root, news=False).load()
    assert "工商银行.csv" in str(e.value) and f"missing column(s) ['{column}']" in str(e.value)


def test_price_file_with_a_bad_date_names_the_file(csmd50_root: Path, tmp_path: Path) -> None:
    root = copy_stocks(csmd50_root, tmp_path / "d", ["工商银行"], news=False)
    f = root / "price" / "工商银行.csv"
    text = f.read_text(encoding="utf-8-sig").replace("2021-01-05", "05/01/2021", 1)
    f.write_text(text, encoding="utf-8-sig")
    with pytest.raises(ValueError, match="工商银行.csv"):
        source(root, news=False).load()


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def test_several_price_and_news_folders_merge_by_stock(csmd50_root: Path, tmp_path: Path) -> None:
    """The old per-split layout (train/ and test/ folders) loads as the single-folder data does."""
    stocks = ["工商银行", "海光信息", "贵州茅台"]
    full = copy_stocks(csmd50_root, tmp_path / "full", stocks)
    cut = "2023-06-30"
    for s in stocks:
        rows = read_price_csv(full / "price" / f"{s}.csv")
        early, late = [r for r in rows if r["Date"] <= cut], [r for r in rows if r["Date"] > cut]
        if s != "贵州茅台":  # 贵州茅台 only in the second folder
            _write_rows(tmp_path / "train" / "price" / f"{s}.csv", early)
            _write_rows(tmp_path / "test" / "price" / f"{s}.csv", late)
        else:
            _write_rows(tmp_path / "test" / "price" / f"{s}.csv", rows)
        for f in (full / "news" / s).glob("*.csv"):
            part = "train" if f.stem <= cut else "test"
            (tmp_path / part / "news" / s).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp_path / part / "news" / s / f.name)
    merged = CSMDSource(
        [str(tmp_path / "train" / "price"), str(tmp_path / "test" / "price")],
        [str(tmp_path / "train" / "news"), str(tmp_path / "test" / "news")],
    ).load()
    whole = source(full).load()
    assert_same_prices(merged, whole)
    key = lambda p: sorted(zip(p.news_stock.tolist(), p.news_date.astype(str).tolist(), p.news_text))  # noqa: E731
    assert key(merged) == key(whole)
    md1, md2 = build_market_data(merged, **PUBLISHER), build_market_data(whole, **PUBLISHER)
    assert torch.equal(md1.features, md2.features)


def test_duplicate_dates_across_folders_keep_the_later_folder(csmd50_root: Path, tmp_path: Path) -> None:
    """Overlapping folders: every duplicated day comes from the folder listed last, deterministically."""
    rows = read_price_csv(csmd50_root / "price" / "贵州茅台.csv")
    doubled = [{**r, "Close": str(float(r["Close"]) * 2)} for r in rows]
    _write_rows(tmp_path / "a" / "price" / "贵州茅台.csv", rows)
    _write_rows(tmp_path / "b" / "price" / "贵州茅台.csv", doubled)
    ab = CSMDSource([str(tmp_path / "a" / "price"), str(tmp_path / "b" / "price")]).load()
    ba = CSMDSource([str(tmp_path / "b" / "price"), str(tmp_path / "a" / "price")]).load()
    a = CSMDSource([str(tmp_path / "a" / "price")]).load()
    assert len(ab.dates) == len(rows)
    np.testing.assert_array_equal(ab.prices["close"], 2 * a.prices["close"])
    np.testing.assert_array_equal(ba.prices["close"], a.prices["close"])
    np.testing.assert_array_equal(ab.prices["open"], a.prices["open"])
