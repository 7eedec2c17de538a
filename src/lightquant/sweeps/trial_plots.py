"""Sweep plots (PNG): the objective per trial, and each searched parameter against it.

Drawn on ``matplotlib.figure.Figure`` (Agg) so no global pyplot backend is touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lightquant.sweeps.runs import OK


def plot_optimization_history(runs: pd.DataFrame, objective: str, direction: str, path: str | Path) -> Path:
    """Objective of each trial in start order, the best so far, and failed trials marked on the axis.

    ``runs`` is :func:`lightquant.sweeps.runs.collect_runs`'s table (rows in start order).
    """
    from matplotlib.figure import Figure

    trial = np.arange(len(runs))
    value = pd.to_numeric(runs.get(objective, pd.Series(np.nan, index=runs.index)), errors="coerce").to_numpy()
    ok = runs["status"].eq(OK).to_numpy() & np.isfinite(value)
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(trial[ok], value[ok], color="tab:blue", zorder=3, label="trial")
    if ok.any():
        best = pd.Series(np.where(ok, value, np.nan))
        best = (best.cummax() if direction == "maximize" else best.cummin()).to_numpy()
        ax.step(trial, best, where="post", color="tab:red", label="best so far")
    n_failed = int((~ok).sum())
    if n_failed:
        ax.scatter(trial[~ok], np.full(n_failed, np.nanmin(value[ok]) if ok.any() else 0.0), marker="x",
                   color="black", zorder=3, label="failed")
    ax.set(xlabel="trial (start order)", ylabel=objective,
           title=f"{objective} ({direction}): {int(ok.sum())} trials" + (f", {n_failed} failed" if n_failed else ""))
    if len(runs) <= 30:
        ax.set_xticks(trial, runs["job"].astype(str), rotation=90 if len(runs) > 12 else 0, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _numeric(values: pd.Series) -> bool:
    return bool(values.notna().any()) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in values.dropna())


def plot_parameters(runs: pd.DataFrame, params: Sequence[str], objective: str, direction: str,
                    path: str | Path, log_scale: Sequence[str] = ()) -> Path:
    """One panel per parameter: objective against its value, coloured by trial order, best trial starred.

    Parameters in ``log_scale`` (searched log-uniformly, e.g. the learning rate) and positive ones
    spanning two decades get a log axis; choices of strings get one tick per category.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    done = runs[runs["status"].eq(OK) & pd.to_numeric(runs.get(objective), errors="coerce").notna()] \
        if objective in runs else runs.iloc[:0]
    n = max(len(params), 1)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.5 * cols, 3.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    order = done.index.to_numpy()
    y = done[objective].astype(float).to_numpy() if len(done) else np.array([])
    best = (int(np.argmax(y)) if direction == "maximize" else int(np.argmin(y))) if len(y) else None
    for ax, name in zip(axes, params, strict=False):  # spare axes are hidden below
        values = done[name]
        if _numeric(values):
            x = values.astype(float).to_numpy()
            if (x > 0).all() and (name in log_scale or x.max() / x.min() >= 100):
                ax.set_xscale("log")
                ax.tick_params(axis="x", which="both", labelsize=7, labelrotation=30)  # minor labels crowd
        else:
            cats = sorted(values.astype(str).unique())
            x = values.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy(dtype=float)
            ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 4 else 0, fontsize=8)
        sc = ax.scatter(x, y, c=order, cmap="viridis", vmin=0, vmax=max(len(runs) - 1, 1), zorder=3)
        if best is not None and len(x):
            ax.scatter([x[best]], [y[best]], marker="*", s=250, facecolor="none", edgecolor="red", zorder=4)
        ax.set(xlabel=name, ylabel=objective)
        ax.grid(alpha=0.3)
    for ax in axes[len(params):]:
        ax.set_visible(False)
    if len(done):
        cbar = fig.colorbar(sc, ax=axes[: len(params)].tolist(), label="trial (start order)", shrink=0.8)
        cbar.locator = MaxNLocator(integer=True)
        cbar.update_ticks()
    fig.suptitle(f"{objective} against each searched parameter ({len(done)} finished trials; red star: best)")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
