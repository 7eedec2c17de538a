"""ACL18 / StockNet dataset (Xu & Cohen, ACL 2018) in its published layout.

    <root>/price/raw/<TICKER>.csv                 Date,Open,High,Low,Close,Adj Close,Volume ("null" rows)
    <root>/tweet/preprocessed/<TICKER>/<date>     JSON lines {"text": [tokens], "created_at": ..., ...}
    <root>/tweet/raw/<TICKER>/<date>              full tweet JSON (used when preprocessed is absent)

Tweet dates: ``tweet_rule="calendar"`` (the literature's, and the default) dates a tweet by
its UTC calendar day; ``"strict"`` converts ``created_at`` to US/Eastern and moves tweets
posted after the 16:00 close to the next day, so nothing published after day d's close is
used from day d. Either way the shared pipeline then attaches a date to the stock's first
trading day on or after it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lightquant.data.panel import Panel
from lightquant.data.prices import DataError, existing_dirs, fingerprint_files, panel_from_frames, read_price_csv
from lightquant.errors import ConfigError, MissingPathError

log = logging.getLogger(__name__)

LOADER_VERSION = "acl18-1"
US_CLOSE_HOUR = 16  # NYSE/NASDAQ close, US/Eastern


class ACL18Source:
    def __init__(self, price_dir: str, tweet_dir: str | None = None, tweet_rule: str = "calendar", name: str = "acl18") -> None:
        if tweet_rule not in ("calendar", "strict"):
            raise ConfigError(f"dataset.source.tweet_rule={tweet_rule!r}; use calendar or strict")
        self.name, self.tweet_rule = name, tweet_rule
        self.price_dir = Path(price_dir)
        self.tweet_dir = Path(tweet_dir) if tweet_dir else None
        self.no_texts = None if tweet_dir else "has no tweets: set dataset.source.tweet_dir"  # as CSMDSource's

    def _files(self) -> tuple[list[Path], list[Path]]:
        (price_dir,) = existing_dirs([self.price_dir], "Price")
        prices = sorted(price_dir.glob("*.csv"))
        if not prices:
            raise MissingPathError(f"No price files (*.csv) in {price_dir}")
        tweets = []
        if self.tweet_dir is not None:
            (tweet_dir,) = existing_dirs([self.tweet_dir], "Tweet")
            tweets = sorted(f for f in tweet_dir.glob("*/*") if f.is_file())
        return prices, tweets

    def fingerprint(self) -> str:
        prices, tweets = self._files()
        return fingerprint_files(prices + tweets, f"{LOADER_VERSION}|{self.tweet_rule}")

    def load(self) -> Panel:
        prices, tweets = self._files()
        frames = {f.stem: read_price_csv(f) for f in prices}
        stock_index = {s: i for i, s in enumerate(sorted(frames))}
        stock_ids, stamps, texts = [], [], []
        for f in tweets:
            sid = stock_index.get(f.parent.name)
            if sid is None:
                continue
            with open(f, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{f}:{n}: not a JSON line ({e}); fix or delete the line") from e
                    text = rec.get("text", "")
                    text = " ".join(text) if isinstance(text, list) else str(text)
                    if text.strip():
                        stock_ids.append(sid)
                        stamps.append(rec.get("created_at") or f.name)
                        texts.append(text)
        days = self._tweet_days(stamps)
        return panel_from_frames(frames, np.array(stock_ids, dtype=np.int64), days, texts)

    def _tweet_days(self, stamps: list[str]) -> np.ndarray:
        if not stamps:
            return np.zeros(0, dtype="datetime64[D]")
        ts = pd.to_datetime(pd.Series(stamps), format="%a %b %d %H:%M:%S %z %Y", utc=True, errors="coerce")
        # a file-name date (YYYY-MM-DD) where created_at is missing
        missing = ts.isna()
        if missing.any():
            ts[missing] = pd.to_datetime(pd.Series(stamps)[missing], format="%Y-%m-%d", utc=True, errors="coerce")
        if ts.isna().any():
            raise DataError(f"Unreadable tweet timestamp(s), e.g. {pd.Series(stamps)[ts.isna()].iloc[0]!r}")
        if self.tweet_rule == "strict":
            local = ts.dt.tz_convert("America/New_York")
            after_close = local.dt.hour >= US_CLOSE_HOUR
            day = local.dt.tz_localize(None).dt.normalize() + pd.to_timedelta(after_close.astype(int), unit="D")
        else:
            day = ts.dt.tz_localize(None).dt.normalize()
        return day.to_numpy().astype("datetime64[D]")
