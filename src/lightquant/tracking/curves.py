"""Per-run training curves as a PNG: losses, validation metrics, learning rate.

Figures are drawn on ``matplotlib.figure.Figure`` (rendered by Agg) instead of pyplot, so
nothing here switches the global backend of a notebook or a GUI session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightquant.tracking.rank import is_rank_zero

VAL_METRICS = ("val/accuracy", "val/mcc", "val/f1")


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    rows = [r for r in history if key in r]
    return [float(r["epoch"]) for r in rows], [float(r[key]) for r in rows]


def plot_history(
    history: Sequence[Mapping[str, Any]], path: str | Path, best_epoch: int | None = None, title: str = ""
) -> Path:
    """Write ``path`` (PNG): train/val loss, validation metrics and the learning rate per epoch.

    ``history`` is ``Trainer.history``: one dict per epoch with ``epoch``, ``lr``, ``train/loss``, ``val/*``.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax_loss, ax_metric, ax_lr = fig.subplots(1, 3)
    for key in ("train/loss", "val/loss"):
        ax_loss.plot(*_series(history, key), marker="o", ms=3, label=key)
    ax_loss.set(title="loss (BCE)", xlabel="epoch")
    for key in VAL_METRICS:
        ax_metric.plot(*_series(history, key), marker="o", ms=3, label=key)
    ax_metric.axhline(0.0, color="grey", lw=0.5)
    ax_metric.set(title="validation metrics", xlabel="epoch")
    epochs, lr = _series(history, "lr")
    ax_lr.plot(epochs, lr, marker="o", ms=3, color="tab:purple")
    ax_lr.set(title="learning rate", xlabel="epoch")
    if lr and min(lr) > 0:
        ax_lr.set_yscale("log")
    for ax in (ax_loss, ax_metric):
        if best_epoch:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        ax.legend(fontsize=8)
    for ax in (ax_loss, ax_metric, ax_lr):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


class CurvesPlot:
    """Trainer callback: ``curves.png`` in ``out_dir`` when fitting ends (rank 0 only)."""

    def __init__(self, out_dir: str | Path, title: str = "", filename: str = "curves.png") -> None:
        self.path = Path(out_dir) / filename
        self.title = title

    def on_fit_end(self, trainer: Any) -> None:
        if is_rank_zero() and trainer.history:
            plot_history(trainer.history, self.path, trainer.early_stopping.best_epoch, self.title)
