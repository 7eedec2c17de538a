"""The leaderboard: one row per finished run in ``result/<dataset>/leaderboard.csv`` (+ ``.md``).

Several sweep workers (``train.py -m`` with a parallel launcher) may finish at the same
moment, so an append is a read-modify-write under an exclusive ``fcntl`` lock on a side
file, and the new CSV replaces the old one atomically: a reader never sees half a file and
no row is lost. Rows may bring new columns (a newer version, a backtest turned on); the
file is rewritten with the union of columns.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightquant.atomic import atomic_write_text
from lightquant.errors import ConfigError
from lightquant.markdown import markdown_table

try:  # POSIX; elsewhere appends are unlocked (a single-process run needs no lock)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

# Columns summarised by default (those present in the file), in this order.
KEY_METRICS = (
    "val_accuracy", "val_mcc", "val_rank_ic", "test_accuracy", "test_majority_accuracy", "test_mcc", "test_f1",
    "test_auc", "test_ic", "test_rank_ic", "test_rank_ic_ir",
    "bt_total_return", "bt_annual_return", "bt_sharpe", "bt_max_drawdown", "bt_calmar", "bt_information_ratio",
    "bench_total_return", "bench_annual_return", "bench_sharpe",
)
# Shown in the markdown run table (the CSV keeps everything).
MD_COLUMNS = (
    "time", "model", "use_news", "seed", "overrides", "val_mcc", "test_accuracy", "test_majority_accuracy", "test_mcc",
    "bt_total_return", "bt_sharpe", "bt_max_drawdown", "bench_total_return", "bench_sharpe", "git_commit",
)
DEFAULT_BY = ("model", "use_news", "overrides")
TEXT_COLUMNS = ("overrides", "git_commit", "output_dir")


def git_commit(cwd: str | Path | None = None) -> str:
    """Short commit of the code (``+dirty`` with uncommitted changes to tracked files); ``unknown``
    outside a git checkout or without git."""
    cwd = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha or "unknown"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)  # blocks until the other writer is done
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def read(path: str | Path) -> pd.DataFrame:
    """The leaderboard as a DataFrame (empty when there is none yet)."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame()
    df = pd.read_csv(path)
    for c in TEXT_COLUMNS:  # an empty text cell reads as NaN; it is "" (e.g. a run without overrides)
        if c in df.columns:
            df[c] = df[c].astype(object).fillna("").astype(str)
    return df


def append(path: str | Path, row: dict[str, Any]) -> pd.DataFrame:
    """Append ``row`` to the CSV at ``path`` and regenerate the ``.md`` beside it; returns the table."""
    path = Path(path)
    if path.suffix != ".csv":
        raise ConfigError(f"leaderboard path {path} must end in .csv (the .md is written beside it)")
    with _locked(path):
        old, new = read(path), pd.DataFrame([row])
        df = pd.concat([old, new], ignore_index=True) if len(old) else new
        atomic_write_text(path, df.to_csv(index=False))
        atomic_write_text(path.with_suffix(".md"), to_markdown_report(df))
    return df


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def frame_table(df: pd.DataFrame, digits: int = 4) -> str:
    """``df`` as a markdown table, floats to ``digits`` decimals (NaN blank)."""
    # the table a person reads: a few hundred rows at most
    return markdown_table(df.columns, ([_fmt(v, digits) for v in rec] for rec in df.itertuples(index=False))) + "\n"


def summarize(df: pd.DataFrame, by: Sequence[str] = DEFAULT_BY, metrics: Sequence[str] | None = None,
              digits: int = 4) -> pd.DataFrame:
    """One row per group of ``by``: ``n`` (runs, e.g. seeds) and ``mean ± std`` (sample std) of
    each metric; a group of one run shows its value alone."""
    by = [c for c in by if c in df.columns]
    if not by:
        raise ValueError(f"none of the grouping columns are in the leaderboard (columns: {list(df.columns)})")
    metrics = [m for m in (metrics or KEY_METRICS) if m in df.columns]
    num = df[metrics].apply(pd.to_numeric, errors="coerce")
    g = num.groupby([df[c].astype(str) for c in by], sort=True)
    mean, std, n = g.mean(), g.std(ddof=1), g.size()
    out = pd.DataFrame(index=mean.index)
    out["n"] = n
    for m in metrics:
        out[m] = [
            _fmt(mu, digits) if cnt < 2 or math.isnan(sd) else f"{_fmt(mu, digits)} ± {_fmt(sd, digits)}"
            for mu, sd, cnt in zip(mean[m], std[m], n)
        ]
    return out.reset_index()


def to_markdown_report(df: pd.DataFrame) -> str:
    """The ``.md``: mean ± std per model (seeds pooled), then every run."""
    parts = ["# Leaderboard\n", "Generated from leaderboard.csv; one row per finished run.\n"]
    if len(df):
        parts += ["\n## By model (mean ± std over seeds)\n\n", frame_table(summarize(df))]
        parts += ["\n## Runs\n\n", frame_table(df[[c for c in MD_COLUMNS if c in df.columns]])]
    return "".join(parts)
