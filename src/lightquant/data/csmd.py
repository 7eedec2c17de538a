"""CSMD (CSMD50 / CSMD300) in its published layout.

    <root>/price/<name>.csv          Date,Open,High,Low,Close,Adj Close,Volume (UTF-8 with BOM)
    <root>/news/<name>/<YYYY-MM-DD>.csv  code_name,ticker,created_at,text (calendar days, weekends too)

Several price/news folders may be given (the old research code kept one folder per
split); their files are merged by stock name and the splits are then made by date.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lightquant.data.panel import PRICE_FIELDS, Panel

log = logging.getLogger(__name__)

LOADER_VERSION = "csmd-1"
PRICE_COLUMNS = {
    "Date": "date",
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}


def _existing_dirs(dirs: Sequence[str | Path], what: str) -> list[Path]:
    out = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise FileNotFoundError(
                f"{what} folder {p} does not exist. Point the dataset at the data: set LIGHTQUANT_DATA "
                f"to the folder that holds it (e.g. LIGHTQUANT_DATA=../shared/datasets) or pass dataset.root=<folder>."
            )
        out.append(p)
    return out


class CSMDSource:
    """Reads CSMD price and news files into a :class:`Panel`."""

    def __init__(self, price_dirs: Sequence[str], news_dirs: Sequence[str] | None = None, name: str = "csmd") -> None:
        if isinstance(price_dirs, (str, Path)) or isinstance(news_dirs, (str, Path)):
            raise TypeError("price_dirs and news_dirs are lists of folders, e.g. dataset.price_dirs=[data/CSMD50/price]")
        self.name = name
        self.price_dirs = [Path(p) for p in price_dirs]
        self.news_dirs = [Path(p) for p in (news_dirs or [])]

    def _price_files(self) -> list[Path]:
        files = [f for d in _existing_dirs(self.price_dirs, "Price") for f in sorted(d.glob("*.csv"))]
        if not files:
            raise FileNotFoundError(f"No price files (*.csv) in {[str(d) for d in self.price_dirs]}")
        return files

    def _news_files(self) -> list[Path]:
        return [f for d in _existing_dirs(self.news_dirs, "News") for f in sorted(d.glob("*/*.csv"))]

    def fingerprint(self) -> str:
        """Hash of every input file's path, size and mtime: the cache key changes when any file does."""
        h = hashlib.sha256(LOADER_VERSION.encode())
        for f in self._price_files() + self._news_files():
            st = f.stat()
            h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()

    def load(self) -> Panel:
        frames: dict[str, list[pd.DataFrame]] = {}
        for f in self._price_files():
            frames.setdefault(f.stem, []).append(_read_price_file(f))
        per_stock = {}
        for s in sorted(frames):
            # A stable sort keeps duplicate dates in folder order, so keep="last" below really keeps the
            # folder listed last; the default quicksort shuffled them and mixed rows of both folders.
            df = pd.concat(frames[s]).sort_index(kind="stable")
            dup = df.index.duplicated(keep="last")
            if dup.any():
                log.warning("%s: %d duplicate dates across price folders; keeping the last", s, int(dup.sum()))
                df = df[~dup]
            per_stock[s] = df
        news_stock, news_date, news_text = self._load_news({s: i for i, s in enumerate(sorted(per_stock))})
        return panel_from_frames(per_stock, news_stock, news_date, news_text)

    def _load_news(self, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
        stock_ids: list[int] = []
        days: list[str] = []
        texts: list[str] = []
        skipped: set[str] = set()
        for f in self._news_files():
            name = f.parent.name
            if name not in index:
                skipped.add(name)
                continue
            try:
                np.datetime64(f.stem, "D")
            except ValueError as e:
                raise ValueError(f"{f}: news file names must be dates (YYYY-MM-DD.csv)") from e
            # The csv module is ~5x faster than pandas on thousands of tiny files.
            with open(f, encoding="utf-8-sig", newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or "text" not in reader.fieldnames:
                    raise ValueError(f"{f}: news files need a 'text' column (CSMD layout: code_name,ticker,created_at,text)")
                for rec in reader:
                    text = (rec["text"] or "").strip()
                    if text:
                        stock_ids.append(index[name])
                        days.append(f.stem)
                        texts.append(text)
        if skipped:
            log.warning("News for %d stock(s) without a price file ignored: %s", len(skipped), sorted(skipped)[:5])
        return np.array(stock_ids, dtype=np.int64), np.array(days, dtype="datetime64[D]"), texts


def _read_price_file(path: Path) -> pd.DataFrame:
    # CSMD files start with a UTF-8 BOM; utf-8-sig strips it so the first column is "Date".
    df = pd.read_csv(path, encoding="utf-8-sig", na_values=["null", ""])
    missing = [c for c in PRICE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; price files need {list(PRICE_COLUMNS)}")
    df = df[list(PRICE_COLUMNS)].rename(columns=PRICE_COLUMNS)
    try:
        df["date"] = pd.to_datetime(df["date"], format="%Y-%m-%d")
    except ValueError as e:
        raise ValueError(f"{path}: column Date must hold dates as YYYY-MM-DD ({e})") from e
    return df.set_index("date")


def panel_from_frames(
    per_stock: dict[str, pd.DataFrame], news_stock: np.ndarray, news_date: np.ndarray, news_text: list[str]
) -> Panel:
    """One price frame per stock (date index, PRICE_FIELDS columns) -> Panel on the union calendar.

    ``news_stock`` indexes the stocks in sorted-name order. Rows without a close (e.g. "null"
    rows) are not trading days of that stock.
    """
    stocks = sorted(per_stock)
    frames = {s: per_stock[s][per_stock[s]["close"].notna()] for s in stocks}
    dates = np.array(sorted(set().union(*(df.index for df in frames.values()))), dtype="datetime64[D]")
    prices = {}
    for field in PRICE_FIELDS:
        arr = np.full((len(stocks), len(dates)), np.nan)
        for i, s in enumerate(stocks):
            df = frames[s]
            arr[i, np.searchsorted(dates, df.index.values.astype("datetime64[D]"))] = df[field].to_numpy(float)
        prices[field] = arr
    return Panel(stocks, dates, prices, news_stock, news_date, news_text)
