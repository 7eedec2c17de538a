"""From a panel to training tensors: features, labels, date splits, windows, news index.

Everything a split needs lives as tensors: one flat (rows, features) table shared by
all splits, and per split the row of each sample's last day. A batch gathers its
windows by indexing (``features[end_row - T + 1 .. end_row]``), so no
samples x window x features copy is ever materialised and no per-sample Python
runs in the training loop.

Rules (see README "Data"):
- a sample is (stock, day t): inputs are the ``look_back_window`` trading days of that
  stock ending at t; its label compares the stock's next trading day's price with t's;
- a sample belongs to the split that holds its *target* day t+1, so no label of a
  split uses prices from a later split;
- normalisation statistics come from training-period rows only;
- news published on day d is attached to the stock's first trading day >= d
  (weekend news goes to Monday) and is never used for day d's own movement.

Evaluation protocols other than the standard one (conf/dataset/acl18_stocknet.yaml) add
three rules, each off by default: ``news_alignment="previous"`` attaches a text to the last
trading day <= its date instead (weekend texts inform Monday's movement, as in stocknet-code);
``text_lag_days=L`` lets a sample with target day d see only texts dated d-L .. d-1; and
``require_text_days`` keeps a sample only if every lag step (each trading day of d-L+1 .. d,
fed by the texts of the calendar days since the trading day before it) has a text in that
window.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from lightquant.batch import Batch
from lightquant.choices import SPLITS
from lightquant.data.cache import cached_panel
from lightquant.data.features import Rows, compute_features, next_day_return
from lightquant.data.panel import Panel
from lightquant.data.sanity import check_classes, check_jumps, check_statistics
from lightquant.errors import ConfigError
from lightquant.settings import check_market_arguments

log = logging.getLogger(__name__)

#: the split :meth:`MarketData.with_scoring` adds: one day's stocks, no labels (predict.py)
SCORE_SPLIT = "predict"


@dataclass
class Split:
    """The samples of one split. Per-stock layout: ``end_row`` (N,), ``y``/``ret`` (N,) or (N, H)
    with horizons. Date layout: ``end_row``/``y``/``ret``/``mask`` (N, S), ``day`` (N,)."""

    end_row: torch.Tensor  # row of the sample's last input day t
    y: torch.Tensor  # float: 1.0 = up
    ret: torch.Tensor  # float: the return each label was made from
    mask: torch.Tensor | None = None  # bool, like y: False = padding / no label; None = all real
    day: torch.Tensor | None = None  # (N,) date index of date items

    def __len__(self) -> int:
        return self.end_row.shape[0]

    def to(self, device: torch.device | str) -> "Split":
        return Split(*(t.to(device) if t is not None else None for t in (self.end_row, self.y, self.ret, self.mask, self.day)))


@dataclass
class MarketData:
    stocks: list[str]
    dates: np.ndarray  # (D,) datetime64[D]
    feature_names: list[str]
    features: torch.Tensor  # (R, F) float32, normalised
    row_stock: torch.Tensor  # (R,) long
    row_day: torch.Tensor  # (R,) long
    news_ptr: torch.Tensor  # (R+1,) long: texts of row r are news_text[news_ptr[r]:news_ptr[r+1]]
    news_text: list[str]
    splits: dict[str, Split]
    look_back_window: int
    norm_mean: torch.Tensor  # (F,)
    norm_std: torch.Tensor  # (F,)
    row_up: torch.Tensor  # (R,) float movement label of each row (day -> next trading day)
    row_labeled: torch.Tensor  # (R,) bool: the row's movement is a usable label (not dropped)
    market: torch.Tensor  # (D, F) equal-weighted mean of all stocks' features per day
    bounds: dict  # split -> (first, last) target day, inclusive
    train_end: np.datetime64  # last target day of the training split
    layout: str = "stock"  # "stock": one window per item; "date": one date's stocks per item
    horizons: int = 1
    # News store (set by with_news): a flat table of one embedding (or, encoder=words, one row of
    # word ids) per text with a zero row 0 for padding, and per row the table index of up to K texts
    # (0 = none). Batches gather from it, so samples x window x texts x dim is never materialised.
    news_emb: torch.Tensor | None = None  # (N+1, E) float32, or (N+1, L) int64 word ids
    word_vectors: torch.Tensor | None = None  # (V, E) the word-level models' initial embedding table (word ids only)
    row_news: torch.Tensor | None = None  # (R, K) long
    # text_lag_days (a protocol's text window): each text's calendar day, and each row's
    news_day: torch.Tensor | None = None  # (N,) long days since 1970 of news_text; (N+1,) once with_news
    day_number: torch.Tensor | None = None  # (D,) long days since 1970 of ``dates``
    text_lag_days: int | None = None
    # (R,) bool: the window ending at the row is complete and finite, labelled or not (what scoring needs)
    row_ready: torch.Tensor | None = None
    text_encoder: dict | None = None  # the fitted text encoder's state behind news_emb (exported with a model)
    _row_ret: torch.Tensor | None = None  # (R,) next-day return of each row (for horizon labels)
    _offsets: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._offsets = torch.arange(-self.look_back_window + 1, 1, device=self.features.device)  # (T,)

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def device(self) -> torch.device:
        return self.features.device

    def neighbour(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The row ``step`` trading days from each of ``rows`` (clamped into the table), and whether it
        is the same stock's (False past a stock's first or last day)."""
        want = rows + step
        other = want.clamp(0, len(self.row_day) - 1)
        return other, (other == want) & (self.row_stock[other] == self.row_stock[rows])

    def batch(self, split: str, idx: torch.Tensor) -> Batch:
        """Gather items ``idx`` of ``split`` into a :class:`Batch` (on this data's device).

        ``...`` below is (B,) per stock and (B, S) for date items."""
        s = self.splits[split]
        end = s.end_row[idx]  # (...)
        rows = end.unsqueeze(-1) + self._offsets  # (..., T)
        if s.day is not None:  # date items: the market over the calendar days ending at the date
            days = (s.day[idx][:, None] + self._offsets).clamp_min(0)  # (B, T)
        else:  # one stock: the market on that stock's own trading days
            days = self.row_day[rows]  # (B, T)
        batch = Batch(
            x=self.features[rows],  # (..., T, F)
            y=s.y[idx],
            y_mask=s.mask[idx] if s.mask is not None else None,
            stock=self.row_stock[end],
            date=self.row_day[end],
            row=end,
            y_hist=self.row_up[rows[..., :-1]],  # (..., T-1): movements j -> j+1, all known at t
            market=self.market[days],  # (B, T, F)
        )
        if self.row_news is not None:
            slots = self.row_news[rows]  # (..., T, K)
            # A row's texts fill its slots from the first, so the slots past the batch's longest real set
            # are padding in every window: dropped, the models' text layers compute on (nearly) real texts
            # only (same outputs: padding is masked; CSMD50 fills 3.5 % of its 20 slots).
            slots = slots[..., : max(int((slots > 0).sum(-1).max()), 1) if slots.numel() else 1]
            batch.news = self.news_emb[slots]  # (..., T, K', E) vectors or (..., T, K', L) word ids
            batch.news_mask = slots > 0
            if self.text_lag_days is not None:  # only texts dated d-L .. d-1 for target day d
                nxt, has_next = self.neighbour(end, 1)
                target = torch.where(  # a stock's last day (a scored one) has no next day yet: d = t + 1
                    has_next, self.day_number[self.row_day[nxt]], self.day_number[self.row_day[end]] + 1)  # (...)
                batch.news_mask &= self.news_day[slots] >= (target - self.text_lag_days)[..., None, None]
        return batch

    def with_scoring(self, day: np.datetime64) -> "MarketData":
        """Add the :data:`SCORE_SPLIT` split: every stock whose window ends on ``day`` (its last row
        there need not have a label yet, so the final day of the data can be scored)."""
        day = np.datetime64(day, "D")
        hit = np.flatnonzero(self.dates == day)
        if len(hit) == 0:
            later = "; the data ends before it: refresh the dataset's files" if day > self.dates[-1] else ""
            raise ConfigError(f"date={day} is not a trading day of the data ({self.dates[0]} .. {self.dates[-1]}){later}")
        rows = torch.nonzero((self.row_day == int(hit[0])) & self.row_ready).flatten()
        if len(rows) == 0:
            raise ConfigError(f"no stock has the {self.look_back_window} complete trading days of history ending on "
                              f"{day} that the model's look_back_window needs")
        nan = torch.full(rows.shape, float("nan"), device=self.device)
        split = Split(end_row=rows, y=torch.zeros(rows.shape, device=self.device), ret=nan)
        return replace(self, splits={**self.splits, SCORE_SPLIT: split}, bounds={**self.bounds, SCORE_SPLIT: (day, day)})

    def with_horizons(self, horizons: int) -> "MarketData":
        """Labels for days t+1 .. t+H per sample (column h-1: movement t+h-1 -> t+h), masked
        where that day has no usable label or lies beyond the sample's split (so no training
        label reaches into the validation period)."""
        if horizons < 1:
            raise ConfigError(f"model.pred_len={horizons} must be >= 1")
        if self.layout != "stock" or self.horizons != 1:
            raise ValueError("with_horizons applies to single-horizon per-stock data")
        if horizons == 1:
            return self
        for name in SPLITS:  # a horizon no sample of a split can reach would be trained on padding only
            lo, hi = self.bounds[name]
            days = int(((self.dates >= lo) & (self.dates <= hi)).sum())
            if horizons > days:
                raise ConfigError(f"model.pred_len={horizons} is longer than the {name} split's {days} trading days "
                                  f"({lo} .. {hi}): no {name} sample could have its later horizons; lower "
                                  "model.pred_len or widen dataset.splits")
        R = len(self.row_up)
        h = torch.arange(horizons, device=self.device)  # (H,)
        splits = {}
        for name, s in self.splits.items():
            r = s.end_row[:, None] + h  # (N, H) rows of days t .. t+H-1
            ok = r < R
            r = r.clamp_max(R - 1)
            ok &= self.row_stock[r] == self.row_stock[s.end_row][:, None]
            ok &= self.row_labeled[r]
            # the movement r -> r+1 ends on row r+1's day, which must lie in this split
            nxt, has_next = self.neighbour(r, 1)
            last = np.searchsorted(self.dates, self.bounds[name][1], side="right") - 1
            ok &= (self.row_day[nxt] <= int(last)) & has_next
            y = torch.where(ok, self.row_up[r], torch.zeros((), device=self.device))
            ok[:, 0] = True  # the headline t+1 label is the sample's own
            y[:, 0] = s.y
            splits[name] = Split(s.end_row, y, torch.where(ok, self._row_ret[r], torch.zeros((), device=self.device)), ok)
        return replace(self, splits=splits, horizons=horizons)

    def by_date(self, n_stocks: int | None = None, seed: int = 0) -> "MarketData":
        """Regroup every split into date items: all samples whose day t is the same date, in
        groups of ``n_stocks`` (a seeded partition, so every stock-day still appears exactly
        once) or all of them (``None``); padding slots are masked."""
        if self.layout != "stock" or self.horizons != 1:
            raise ValueError("by_date applies to single-horizon per-stock data")
        if n_stocks is not None and n_stocks < 1:
            raise ConfigError(f"dataset.n_stocks={n_stocks} must be >= 1 or null (all stocks of a date)")
        rng = np.random.default_rng(seed)
        pad_row = self.look_back_window - 1  # any row whose window indexes stay in range
        splits = {}
        for name, s in self.splits.items():
            end = s.end_row.cpu().numpy()
            day = self.row_day.cpu().numpy()[end]
            order = np.argsort(day, kind="stable")
            starts = np.flatnonzero(np.r_[True, day[order][1:] != day[order][:-1]])
            groups: list[np.ndarray] = []
            for a, b in zip(starts, np.r_[starts[1:], len(order)]):
                members = order[a:b]
                if n_stocks is None or len(members) <= n_stocks:
                    groups.append(members)
                else:
                    members = rng.permutation(members)
                    groups.extend(members[i : i + n_stocks] for i in range(0, len(members), n_stocks))
            width = max((len(g) for g in groups), default=1)
            idx = np.full((len(groups), width), -1)
            for i, g in enumerate(groups):
                idx[i, : len(g)] = g
            mask = torch.from_numpy(idx >= 0)
            take = torch.from_numpy(np.maximum(idx, 0))
            splits[name] = Split(
                end_row=torch.where(mask, s.end_row.cpu()[take], pad_row),
                y=torch.where(mask, s.y.cpu()[take], 0.0),
                ret=torch.where(mask, s.ret.cpu()[take], 0.0),
                mask=mask,
                day=torch.from_numpy(day[idx[:, 0]] if len(groups) else np.zeros(0, dtype=np.int64)),
            )
        out = replace(self, splits=splits, layout="date")
        return out.to(self.device)

    @property
    def news_size(self) -> int:
        """Embedding size E of the attached news, the word vectors' for word ids (0 without news)."""
        if self.word_vectors is not None:
            return self.word_vectors.shape[1]
        return 0 if self.news_emb is None else self.news_emb.shape[1]

    @property
    def vocab_size(self) -> int:
        """Rows of the word embedding table when texts come as word ids (padding and unknown included), else 0."""
        return 0 if self.word_vectors is None else self.word_vectors.shape[0]

    def train_texts(self) -> list[str]:
        """Texts attached to training-period days: what a text encoder may be fitted on."""
        ptr = self.news_ptr.cpu()
        owner = torch.repeat_interleave(torch.arange(len(ptr) - 1), ptr[1:] - ptr[:-1])  # (N,) row of each text
        day_ok = torch.from_numpy(self.dates <= self.train_end)[self.row_day.cpu()]  # (R,)
        return [t for t, k in zip(self.news_text, day_ok[owner].tolist()) if k]

    def with_news(self, embeddings: np.ndarray | torch.Tensor, max_texts: int,
                  word_vectors: torch.Tensor | None = None) -> "MarketData":
        """Attach text embeddings (one per ``news_text``, same order), keeping up to
        ``max_texts`` texts per stock-day (the first ones in publication order).

        Integer ``embeddings`` are word ids (texts x words, 0 = padding), read by the word-level
        models with ``word_vectors`` (vocabulary x E) as their embedding table's starting point."""
        arr = np.asarray(embeddings)
        integer = arr.dtype.kind in "iu"
        emb = torch.as_tensor(arr.astype(np.int64 if integer else np.float32))
        if emb.ndim != 2 or emb.shape[0] != len(self.news_text):
            raise ValueError(f"need one embedding per text: got {tuple(emb.shape)} for {len(self.news_text)} texts")
        if integer != (word_vectors is not None):
            raise ValueError("word ids come with their word_vectors (and vectors without): got "
                             f"{'ids' if integer else 'vectors'} and {'no ' if word_vectors is None else ''}word_vectors")
        if integer and emb.numel() and not 0 <= int(emb.min()) <= int(emb.max()) < len(word_vectors):
            raise ValueError(f"word ids must lie in [0, {len(word_vectors)}): the vocabulary's size")
        if max_texts < 1:
            raise ConfigError(f"dataset.max_num_tweets_len={max_texts} must be >= 1")
        ptr = self.news_ptr.cpu()
        counts = ptr[1:] - ptr[:-1]  # (R,)
        k = torch.arange(max_texts)
        # slot k of a row holds its k-th text (+1: table row 0 is the padding), or the padding
        slots = torch.where(k < counts[:, None], ptr[:-1, None] + k + 1, 0)  # (R, K)
        table = torch.cat([emb.new_zeros(1, emb.shape[1]), emb])  # (N+1, E) or (N+1, L)
        out = replace(self, news_emb=table.to(self.device), row_news=slots.to(self.device),
                      word_vectors=None if word_vectors is None else torch.as_tensor(word_vectors, dtype=torch.float32))
        if self.news_day is not None and len(self.news_day) == len(self.news_text):  # indexed like the table
            out.news_day = torch.cat([self.news_day.new_zeros(1), self.news_day.cpu()]).to(self.device)
        return out

    def to(self, device: torch.device | str) -> "MarketData":
        """Move every tensor; the splits are small, so the whole dataset can live on the GPU."""
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in self.__dict__.items()
            if k != "_offsets"
        }
        moved["splits"] = {k: s.to(device) for k, s in self.splits.items()}
        return MarketData(**moved)

    def check_splits(self) -> None:
        """Raise a clear error when a split has no sample (a run needs all three)."""
        for name, s in self.splits.items():
            if len(s) == 0:
                raise ConfigError(_empty_split_message(name, self.bounds, self.dates, self.look_back_window))

    def texts(self, row: int) -> list[str]:
        """News texts attached to one stock-day row."""
        return self.news_text[int(self.news_ptr[row]) : int(self.news_ptr[row + 1])]

    def summary(self) -> str:
        parts = [f"{len(self.stocks)} stocks, {len(self.dates)} days, {self.num_features} features"]
        for k, s in self.splits.items():
            y = s.y[..., 0] if self.horizons > 1 else s.y  # headline t+1
            y = y[s.mask] if self.layout == "date" else y
            up = float(y.mean()) if len(y) else float("nan")
            items = f" in {len(s)} dates" if self.layout == "date" else ""
            parts.append(f"{k} {len(y)} samples{items} ({up:.1%} up)")
        if self.news_text:  # a price-only run does not load them
            parts.append(f"{len(self.news_text)} news texts")
        return "; ".join(parts)


def _empty_split_message(name: str, bounds: dict, dates: np.ndarray, window: int) -> str:
    lo, hi = bounds[name]
    return (
        f"The {name} split is empty (target days {lo} .. {hi}): check dataset.splits against the data's dates "
        f"{dates[0]} .. {dates[-1]} and dataset.look_back_window={window}"
    )


def _split_bounds(splits: dict, dates: np.ndarray) -> dict[str, tuple[np.datetime64, np.datetime64]]:
    """Inclusive target-date ranges for train/val/test from ``dataset.splits``.

    With neither ``train_end`` nor ``val_end`` given, the last 10 % of the dates are the test
    period and the 10 % before them validation (said in the log)."""
    unknown = set(splits) - {"train_start", "train_end", "val_end", "test_end"}
    if unknown:
        raise ConfigError(f"dataset.splits has unknown key(s) {sorted(unknown)}; use train_start, train_end, val_end, test_end")

    def day(key: str, default: np.datetime64) -> np.datetime64:
        v = splits.get(key)
        if v is None:
            return default
        try:
            return np.datetime64(str(v), "D")
        except ValueError as e:
            raise ConfigError(f"dataset.splits.{key}={v!r} is not a date (YYYY-MM-DD)") from e

    lo, hi = dates[0], dates[-1]
    train_start = day("train_start", lo)
    train_end, val_end = day("train_end", None), day("val_end", None)
    if train_end is None and val_end is None:
        n = len(dates)
        train_end, val_end = dates[int(n * 0.8) - 1], dates[int(n * 0.9) - 1]
        log.warning(
            "dataset.splits sets no dates: using the last 10%% of dates as test and the 10%% before as validation "
            "(train_end=%s, val_end=%s); set dataset.splits.train_end/val_end to choose", train_end, val_end
        )
    elif train_end is None or val_end is None:
        raise ConfigError("dataset.splits needs both train_end and val_end dates (YYYY-MM-DD), or neither for 80/10/10")
    test_end = day("test_end", hi)
    if not train_start <= train_end < val_end < test_end:
        raise ConfigError(
            f"dataset.splits must satisfy train_start <= train_end < val_end < test_end, got "
            f"{train_start}, {train_end}, {val_end}, {test_end}"
        )
    one = np.timedelta64(1, "D")
    return {"train": (train_start, train_end), "val": (train_end + one, val_end), "test": (val_end + one, test_end)}


def _attach_news(panel: Panel, rows: Rows, alignment: str = "next") -> tuple[np.ndarray, list[str], np.ndarray]:
    """CSR index of texts per row: each text goes to its stock's first trading day >= its date
    (``"next"``) or its last trading day <= its date (``"previous"``). Also each kept text's day
    number (days since 1970). ``alignment`` was checked with build_market_data's arguments."""
    n_rows = len(rows)
    if len(panel.news_text) == 0:
        return np.zeros(n_rows + 1, dtype=np.int64), [], np.zeros(0, dtype=np.int64)
    day_num = panel.dates.astype("datetime64[D]").astype(np.int64)
    span = int(day_num.max() - day_num.min()) + 10_000  # room for news dated outside the price range
    base = int(day_num.min()) - 5_000
    row_key = rows.stock * span + (day_num[rows.day] - base)  # sorted, as rows are sorted by (stock, day)
    # Convert to days first, as for panel.dates above: news_date in another unit (e.g. datetime64[ns]
    # from pandas) would otherwise be counted in ns, clipped, and every news item silently dropped.
    news_day = panel.news_date.astype("datetime64[D]").astype(np.int64)
    news_key = panel.news_stock * span + np.clip(news_day - base, 0, span - 1)
    if alignment == "next":
        target = np.searchsorted(row_key, news_key, side="left")
    else:
        target = np.searchsorted(row_key, news_key, side="right") - 1
    ok = (target >= 0) & (target < n_rows)
    ok[ok] = rows.stock[target[ok]] == panel.news_stock[ok]  # news outside the stock's trading days is dropped
    if (~ok).any():
        side = "after their stock's last" if alignment == "next" else "before their stock's first"
        log.info("%d news item(s) dated %s trading day dropped", int((~ok).sum()), side)
    order = np.argsort(target[ok], kind="stable")
    kept = np.nonzero(ok)[0][order]
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(target[kept], minlength=n_rows), out=ptr[1:])
    return ptr, [panel.news_text[i] for i in kept.tolist()], news_day[kept]


def _text_coverage(rows: Rows, day_num: np.ndarray, ptr: np.ndarray, news_day: np.ndarray, lag: int,
                   window: int) -> np.ndarray:
    """(R,) bool: the sample ending at row t (target day d = the next row's day) has, for every lag
    step, a text dated d-lag .. d-1 on the row feeding it. The steps are the trading days of
    d-lag+1 .. d; step s is fed by the row of the trading day before s (texts "previous"-aligned,
    so dated from that day up to s-1). stocknet-code's ``_get_unaligned_corpora`` and its
    zero-message check in ``sample_gen_from_one_stock``."""
    n = len(rows)
    counts = np.diff(ptr)
    last = np.full(n, np.iinfo(np.int64).min // 2)  # latest text day of each row
    has = counts > 0
    if has.any():
        last[has] = np.maximum.reduceat(news_day, ptr[:-1][has])
    day = day_num[rows.day]  # (R,) calendar day of each row
    nxt = np.minimum(np.arange(n) + 1, n - 1)
    same_next = np.r_[rows.stock[1:] == rows.stock[:-1], False]
    target = np.where(same_next, day[nxt], np.iinfo(np.int64).max // 2)  # d of the sample ending at t
    ok = same_next.copy()
    # At most `lag` steps, fed by rows t .. t-lag+1: inside the window (window >= lag, checked by the caller).
    for k in range(min(window, lag)):  # row t-k feeds a step when its next trading day is > d - lag
        r = np.arange(n) - k
        valid = r >= 0
        rc = np.maximum(r, 0)
        valid &= rows.stock[rc] == rows.stock
        step = valid & (day[np.minimum(rc + 1, n - 1)] > target - lag)
        ok &= ~step | (last[rc] >= target - lag)
    return ok


def build_market_data(
    panel: Panel,
    *,
    features: Sequence[str],
    look_back_window: int,
    splits: dict,
    label_price: str = "close",
    up_threshold: float = 0.0,
    down_threshold: float = 0.0,
    normalize: bool = True,
    news_alignment: str = "next",
    text_lag_days: int | None = None,
    require_text_days: bool = False,
    max_jump: float | None = 3.0,
    on_jump: str = "warn",
    norm_stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> MarketData:
    """Turn a panel into :class:`MarketData`. Plain arguments, no config objects.
    ``news_alignment``, ``text_lag_days``, ``require_text_days``: a protocol's text rules (module doc);
    ``max_jump``, ``on_jump``: one-day moves taken for unadjusted splits (:mod:`lightquant.data.sanity`);
    ``norm_stats``: (mean, std) to normalise with instead of this data's training rows (a trained model's)."""
    check_market_arguments(look_back_window=look_back_window, text_lag_days=text_lag_days,
                           require_text_days=require_text_days, up_threshold=up_threshold,
                           down_threshold=down_threshold, label_price=label_price, news_alignment=news_alignment,
                           on_jump=on_jump)
    panel = check_jumps(panel, max_jump, on_jump)
    rows = Rows.from_panel(panel)
    x = compute_features(rows, list(features))  # (R, F)
    ret = next_day_return(rows, label_price)  # (R,)
    target_day = np.full(len(rows), -1)
    nxt_has = rows.prev >= 0
    target_day[rows.prev[nxt_has]] = rows.day[nxt_has]

    # A window ending at row r is usable iff its T rows are of one stock and all finite:
    # count bad rows with a cumulative sum so the check is vectorised.
    T = look_back_window
    bad = ~np.isfinite(x).all(axis=1)
    cbad = np.concatenate([[0], np.cumsum(bad)])
    r = np.arange(len(rows))
    start = r - T + 1
    usable = start >= 0
    usable[usable] &= rows.stock[start[usable]] == rows.stock[usable]
    usable[usable] &= (cbad[r[usable] + 1] - cbad[start[usable]]) == 0
    ready = usable.copy()  # a window to score; a sample needs a usable label too
    usable &= np.isfinite(ret)

    up = ret >= up_threshold
    down = ret < down_threshold
    usable &= up | down  # returns in [down, up) are ambiguous and dropped
    day_num = panel.dates.astype("datetime64[D]").astype(np.int64)
    news_ptr, news_text, news_day = _attach_news(panel, rows, news_alignment)
    if require_text_days:
        if not news_text:
            raise ConfigError("dataset.require_text_days=true but the dataset has no texts: check its news/tweet folders")
        usable &= _text_coverage(rows, day_num, news_ptr, news_day, text_lag_days, T)

    bounds = _split_bounds(dict(splits), panel.dates)
    tdates = np.where(target_day >= 0, panel.dates[np.maximum(target_day, 0)], np.datetime64("NaT"))
    split_data: dict[str, Split] = {}
    for name in SPLITS:
        lo, hi = bounds[name]
        sel = np.nonzero(usable & (tdates >= lo) & (tdates <= hi))[0]
        split_data[name] = Split(
            end_row=torch.from_numpy(sel.astype(np.int64)),
            y=torch.from_numpy(up[sel].astype(np.float32)),
            ret=torch.from_numpy(ret[sel].astype(np.float32)),
        )
    if len(split_data["train"]) == 0:
        raise ConfigError(_empty_split_message("train", bounds, panel.dates, T))
    check_classes(split_data, (up_threshold, down_threshold))
    per_stock = np.bincount(rows.stock[usable], minlength=len(panel.stocks))
    short = [panel.stocks[i] for i in np.flatnonzero(per_stock == 0)]
    if short:
        log.warning("%d stock(s) give no sample (history shorter than look_back_window=%d + 1 or no labels): %s",
                    len(short), T, short[:10])

    # Normalisation statistics from training-period rows only (days up to train_end).
    train_rows = panel.dates[rows.day] <= bounds["train"][1]
    if norm_stats is not None:
        mean, std = (np.asarray(v, dtype=np.float64) for v in norm_stats)
        if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
            raise ConfigError(f"normalisation statistics for {len(mean)} features, but dataset.features has {x.shape[1]}")
    elif normalize:
        mean = np.nanmean(x[train_rows], axis=0)
        std = np.nanstd(x[train_rows], axis=0)
        std[~(std > 1e-12)] = 1.0  # a constant feature stays centred instead of dividing by 0
        check_statistics(mean, std, list(features))  # never exported otherwise
    else:
        mean, std = np.zeros(x.shape[1]), np.ones(x.shape[1])
    xn = np.nan_to_num((x - mean) / std, nan=0.0)  # NaN rows are never inside a usable window

    lagged = text_lag_days is not None
    return MarketData(
        stocks=list(panel.stocks),
        dates=panel.dates,
        feature_names=list(features),
        features=torch.from_numpy(xn.astype(np.float32)),
        row_stock=torch.from_numpy(rows.stock),
        row_day=torch.from_numpy(rows.day),
        news_ptr=torch.from_numpy(news_ptr),
        news_text=news_text,
        splits=split_data,
        look_back_window=T,
        norm_mean=torch.from_numpy(mean.astype(np.float32)),
        norm_std=torch.from_numpy(std.astype(np.float32)),
        row_up=torch.from_numpy(np.nan_to_num(up.astype(np.float32) * np.isfinite(ret))),
        row_labeled=torch.from_numpy(np.isfinite(ret) & (up | down)),
        market=torch.from_numpy(_market_features(xn, bad, rows.day, len(panel.dates))),
        bounds=bounds,
        train_end=bounds["train"][1],
        _row_ret=torch.from_numpy(np.nan_to_num(ret).astype(np.float32)),
        news_day=torch.from_numpy(news_day) if lagged else None,
        day_number=torch.from_numpy(day_num) if lagged else None,
        text_lag_days=text_lag_days,
        row_ready=torch.from_numpy(ready),
    )


def _market_features(x: np.ndarray, bad: np.ndarray, day: np.ndarray, n_days: int) -> np.ndarray:
    """(D, F) equal-weighted mean over the stocks trading each day (0 where none): the market
    context for datasets without an index series."""
    ok = ~bad
    count = np.bincount(day[ok], minlength=n_days).astype(np.float64)
    sums = np.stack([np.bincount(day[ok], weights=x[ok, f], minlength=n_days) for f in range(x.shape[1])], axis=1)
    return (sums / np.maximum(count, 1.0)[:, None]).astype(np.float32)


def load_market_data(source, cache_dir: str | None = None, news: bool = True, until: np.datetime64 | None = None,
                     **kwargs) -> MarketData:
    """Load ``source`` (through the cache) and build :class:`MarketData`; kwargs as in build_market_data.
    ``news=False``: prices only, the texts are neither decoded nor indexed. ``until``: drop every price
    and text dated after that day first, so nothing later can reach it (scoring a day as of its close)."""
    panel = cached_panel(source, cache_dir, news=news)
    return build_market_data(panel.until(until) if until is not None else panel, **kwargs)
