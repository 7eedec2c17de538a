"""Reading daily OHLCV files robustly, shared by every file-based source.

Real files are messy. Each problem is either repaired with one logged warning that
counts what was repaired (the repair is standard and loses nothing a model needs), or
rejected with one line naming the file, the row or column, and the fix. A NaN never
reaches a tensor: rows that cannot be repaired are not trading days.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.errors import DataError, MissingPathError

log = logging.getLogger(__name__)

#: accepted spellings (lower-case, without spaces, "_" or "-") of each field
ALIASES = {
    "date": ("date", "tradedate", "tradingdate", "datetime", "timestamp", "time", "day", "日期", "交易日期"),
    "open": ("open", "openprice", "开盘", "开盘价"),
    "high": ("high", "highprice", "最高", "最高价"),
    "low": ("low", "lowprice", "最低", "最低价"),
    "close": ("close", "closeprice", "收盘", "收盘价"),
    "adj_close": ("adjclose", "adjustedclose", "adjclosing", "复权收盘价"),
    "volume": ("volume", "vol", "成交量"),
}
#: prices above this are taken for corrupt cells (Berkshire A, the dearest listed share, is ~1e6)
MAX_PRICE = 1e9
ENCODINGS = ("utf-8-sig", "gbk")  # utf-8-sig also reads plain UTF-8 (and strips a BOM)
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%m/%d/%Y", "%d.%m.%Y")


def existing_dirs(dirs: Sequence[str | Path], what: str) -> list[Path]:
    out = []
    for d in dirs:
        p = Path(d)
        if p.is_symlink() and not p.exists():
            raise MissingPathError(f"{what} folder {p} is a broken or looping symbolic link (to {os.readlink(p)}); "
                                   "point it at the data folder")
        if not p.is_dir():
            raise MissingPathError(
                f"{what} folder {p} does not exist. Point the dataset at the data: set LIGHTQUANT_DATA "
                f"to the folder that holds it (e.g. LIGHTQUANT_DATA=../shared/datasets) or pass dataset.root=<folder>."
            )
        out.append(p)
    return out


def fingerprint_files(files: Iterable[Path], salt: str) -> str:
    """Hash of every file's path, inode, size, mtime and ctime: a cache key that changes when any
    input does. ctime is what makes it safe: any write to a file (or a chmod, or a restored mtime)
    sets it to the present, and no tool can set it back, so a file edited in place with its size and
    mtime kept still misses the cache. Stat data only: hashing the bytes would cost ~1 s per start on
    ACL18's 26k files, against 0.25 s for this."""
    h = hashlib.sha256(salt.encode())
    for f in files:
        st = stat_or_raise(f)
        h.update(f"{f.resolve()}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


def stat_or_raise(path: Path) -> os.stat_result:
    """``path.stat()``, or a DataError naming the file (a broken or looping link, a file that vanished)."""
    try:
        return path.stat()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); a broken or looping symbolic link, or a file "
                        "removed while loading: fix or remove it") from e


def read_text(path: Path) -> str:
    """File content as text: UTF-8 (with or without BOM), else GBK (common for A-share exports)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check the file and its permissions") from e
    for enc in ENCODINGS:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"{path}: not UTF-8 or GBK text; re-save it as UTF-8")


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name)).lower()


def _rename(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    found = {}
    for col in df.columns:
        for field, names in ALIASES.items():
            if _key(col) in names:
                if field in found:  # e.g. both Close and close: which one is meant cannot be guessed
                    raise DataError(f"{path}: columns {found[field]!r} and {col!r} both read as {field}; "
                                    "delete or rename one of them")
                found[field] = col
    missing = [f.capitalize() for f in ("date", "open", "high", "low", "close", "volume") if f not in found]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; price files need Date,Open,High,Low,Close,Volume "
            f"(Adj Close optional; any order and case). Found {list(df.columns)}"
        )
    out = df[[found[f] for f in found]].rename(columns={v: k for k, v in found.items()})
    if "adj_close" not in out:
        out["adj_close"] = out["close"]  # no adjustment given: prices are taken as adjusted
    return out


def _parse_dates(values: pd.Series, path: Path) -> pd.Series:
    text = values.astype(str).str.strip()
    for fmt in DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if parsed.notna().mean() > 0.99:
            bad = parsed.isna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(f"{path}: row {i + 2}: date {text.iloc[i]!r} does not match {fmt}; fix or delete the row")
            return parsed
    raise DataError(
        f"{path}: column Date holds no dates in a known format ({', '.join(DATE_FORMATS)}), "
        f"e.g. {text.iloc[0] if len(text) else ''!r}"
    )


def read_price_csv(path: Path) -> pd.DataFrame:
    """One stock's daily bars: a date-sorted frame with columns PRICE_FIELDS, only usable rows."""
    from io import StringIO

    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path}: empty file; delete it or fill it with Date,Open,High,Low,Close,Volume rows")
    try:
        df = pd.read_csv(StringIO(text), na_values=["null", "NULL", "None", "nan", "NaN", "", "-", "--"])
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from e
    df = _rename(df, path)
    df["date"] = _parse_dates(df["date"], path)
    repairs: dict[str, int] = {}
    for f in PRICE_FIELDS:
        num = pd.to_numeric(df[f], errors="coerce")
        n_bad = int((num.isna() & df[f].notna()).sum())
        if n_bad:
            repairs[f"non-numeric {f} cells"] = n_bad
        df[f] = num.astype(float)
    if not df["date"].is_monotonic_increasing:
        repairs["rows out of date order (sorted)"] = int((df["date"].diff() < pd.Timedelta(0)).sum())
        df = df.sort_values("date", kind="stable")
    dup = df["date"].duplicated(keep="last")
    if dup.any():
        repairs["duplicate dates (kept the last)"] = int(dup.sum())
        df = df[~dup]
    price = df[["open", "high", "low", "close", "adj_close"]]
    huge = (price.abs() > MAX_PRICE).any(axis=1) | ~np.isfinite(df["volume"].fillna(0))
    if huge.any():
        i = int(np.flatnonzero(huge.to_numpy())[0])
        raise DataError(f"{path}: row dated {df['date'].iloc[i].date()}: a price above {MAX_PRICE:g} or an infinite "
                        f"volume ({price.iloc[i].max():g}): a corrupt cell; fix or delete the row")
    future = df["date"] > pd.Timestamp.today().normalize() + pd.Timedelta(days=1)
    if future.any():  # a row dated 2099 would move the automatic split dates
        repairs[f"rows dated after today, e.g. {df['date'][future].iloc[0].date()} (dropped)"] = int(future.sum())
        df, price = df[~future], price[~future]
    unusable = price.isna().any(axis=1) | (price <= 0).any(axis=1) | df["volume"].isna() | (df["volume"] < 0)
    if unusable.any():
        repairs["rows with missing, zero or negative prices/volume (dropped)"] = int(unusable.sum())
        df = df[~unusable]
    hi = df[["open", "high", "low", "close"]].max(axis=1)
    lo = df[["open", "high", "low", "close"]].min(axis=1)
    bad_ohlc = (df["high"] < hi) | (df["low"] > lo)
    if bad_ohlc.any():
        repairs["rows with high/low not bracketing open/close (high/low widened)"] = int(bad_ohlc.sum())
        df = df.assign(high=hi, low=lo)
    if repairs:
        log.warning("%s: repaired %s", path, "; ".join(f"{n} {what}" for what, n in repairs.items()))
    if df.empty:
        raise DataError(f"{path}: no usable rows left (every row lacks a positive price or a date)")
    return df.set_index("date")[list(PRICE_FIELDS)]


def panel_from_frames(
    per_stock: dict[str, pd.DataFrame], news_stock: np.ndarray, news_date: np.ndarray, news_text: list[str]
) -> Panel:
    """One price frame per stock (date index, PRICE_FIELDS columns) -> Panel on the union calendar.

    ``news_stock`` indexes the stocks in sorted-name order."""
    stocks = sorted(per_stock)
    dates = np.array(sorted(set().union(*(df.index for df in per_stock.values()))), dtype="datetime64[D]")
    prices = {}
    for field in PRICE_FIELDS:
        arr = np.full((len(stocks), len(dates)), np.nan)
        for i, s in enumerate(stocks):
            df = per_stock[s]
            arr[i, np.searchsorted(dates, df.index.values.astype("datetime64[D]"))] = df[field].to_numpy(float)
        prices[field] = arr
    return Panel(stocks, dates, prices, news_stock, news_date, news_text)
