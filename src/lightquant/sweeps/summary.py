"""The report of one multirun / sweep dir: leaderboard, best configuration, seed summary.

Writes into the sweep dir ``leaderboard.csv`` (every job, every metric), ``seed_summary.csv``
(runs grouped by their overrides except ``seed``: mean and std of each metric),
``best.yaml`` (the best run's overrides, metrics and the command that reruns it),
``report.md`` (all three, readable) and the plots of :mod:`lightquant.sweeps.trial_plots`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lightquant.atomic import atomic_write_text
from lightquant.errors import ConfigError
from lightquant.markdown import markdown_table
from lightquant.sweeps.runs import OK, collect_runs, sweep_settings

log = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
#: metrics shown in report.md (the CSV files hold all of them)
SHOWN = tuple(f"{s}/{m}" for s in ("val", "test") for m in ("accuracy", "mcc", "f1", "rank_ic", "loss"))
#: overrides that say how to run, not what: left out of the rerun command of the best run
NOT_FOR_RERUN = ("hparams_search",)


def infer_direction(objective: str) -> str:
    """Losses are minimised, everything else (accuracy, MCC, F1, returns) maximised."""
    return "minimize" if objective.rsplit("/", 1)[-1].endswith("loss") else "maximize"


def rank_runs(runs: pd.DataFrame, objective: str, direction: str) -> pd.DataFrame:
    """``runs`` best first by ``objective``; failed runs and runs without the metric last."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction={direction!r}: choose maximize or minimize")
    runs = runs.copy()
    if objective not in runs:
        runs[objective] = float("nan")
    ok = runs["status"].eq(OK) & runs[objective].notna()
    ranked = pd.concat([
        runs[ok].sort_values(objective, ascending=direction == "minimize", kind="stable"),
        runs[~ok],
    ])
    ranked.insert(0, "rank", [*range(1, int(ok.sum()) + 1), *[None] * int((~ok).sum())])
    return ranked.reset_index(drop=True)


def seed_summary(runs: pd.DataFrame, varying: Sequence[str], objective: str, direction: str) -> pd.DataFrame:
    """Finished runs grouped by their varying overrides except ``seed``: n, mean and std per metric.

    ``std`` is the sample standard deviation (n-1), NaN for a group of one run.
    """
    ok = runs[runs["status"].eq(OK)]
    keys = [k for k in varying if k != "seed"]
    metrics = [c for c in ok.columns if "/" in c and pd.api.types.is_numeric_dtype(ok[c])]
    if ok.empty:
        return pd.DataFrame(columns=[*keys, "n"])
    # dropna=False: a key some jobs lack (None) is still a group
    grouped = ok.groupby(keys, dropna=False, sort=False) if keys else ok.assign(_all="all").groupby("_all")
    stats = grouped[metrics].agg(["mean", "std"])
    stats.columns = [f"{m}_{s}" for m, s in stats.columns]
    stats.insert(0, "n", grouped.size())
    stats = stats.reset_index().drop(columns="_all", errors="ignore")
    sort_col = f"{objective}_mean"
    if sort_col in stats:
        stats = stats.sort_values(sort_col, ascending=direction == "minimize", kind="stable")
    return stats.reset_index(drop=True)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and pd.isna(x)):
        return "—"
    if isinstance(x, float):
        return f"{x:.3g}" if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5) else f"{x:.{digits}f}"
    return str(x)


def _int(x: Any) -> Any:
    """Counts such as best_epoch, which pandas turns into floats (NaN for failed runs)."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    return markdown_table(header, ([_fmt(c) for c in r] for r in rows))


def best_run(ranked: pd.DataFrame, objective: str) -> dict[str, Any] | None:
    """The top run: its overrides, metrics and a command that reruns it alone."""
    if ranked.empty or pd.isna(ranked.loc[0, "rank"]):
        return None
    top = ranked.loc[0]
    overrides = [o for o in str(top["overrides"]).split(" ") if o and o.partition("=")[0] not in NOT_FOR_RERUN]
    metrics = {c: float(top[c]) for c in ranked.columns if "/" in c and pd.notna(top[c])}
    return {
        "job": str(top["job"]),
        "run_dir": str(top["run_dir"]),
        "objective": {"name": objective, "value": float(top[objective])},
        "overrides": overrides,
        "command": "python train.py " + " ".join(overrides),
        "metrics": metrics,
    }


def render_markdown(sweep_dir: Path, ranked: pd.DataFrame, summary: pd.DataFrame, varying: Sequence[str],
                    common: dict[str, Any], best: dict[str, Any] | None, objective: str, direction: str) -> str:
    n_ok = int(ranked["status"].eq(OK).sum())
    shown = [m for m in dict.fromkeys([objective, *SHOWN]) if m in ranked]
    out = [f"# Sweep report: {sweep_dir.name}", "",
           (f"{len(ranked)} runs ({n_ok} finished, {len(ranked) - n_ok} failed or unfinished); "
            f"objective `{objective}` ({direction})."), ""]
    if common:
        out += ["Common overrides: " + " ".join(f"`{k}={v}`" for k, v in common.items()), ""]
    if best:
        out += ["## Best configuration", "",
                f"Job `{best['job']}`: `{objective}` = {_fmt(best['objective']['value'])}", "",
                "```bash", best["command"], "```", ""]
    out += ["## Leaderboard", "",
            _table(["rank", "job", "status", *varying, *shown, "best_epoch", "error"],
                           [[_int(r["rank"]), r["job"], r["status"], *[r.get(k) for k in varying],
                             *[r.get(m) for m in shown], _int(r.get("best_epoch")), r.get("error") if isinstance(r.get("error"), str) else ""]
                            for _, r in ranked.iterrows()]), ""]
    if not summary.empty and ("seed" in varying or summary["n"].max() > 1):
        keys = [k for k in varying if k != "seed"]
        out += ["## Seed summary (mean ± std over runs that differ only in seed)", "",
                _table([*keys, "n", *shown],
                               [[*[r[k] for k in keys], r["n"],
                                 *[f"{_fmt(r.get(f'{m}_mean'))} ± {_fmt(r.get(f'{m}_std'))}" for m in shown]]
                                for _, r in summary.iterrows()]), ""]
    return "\n".join(out) + "\n"


def write_report(sweep_dir: str | Path, objective: str | None = None, direction: str | None = None,
                 plots: bool = True) -> dict[str, Path]:
    """Write the sweep dir's report files; returns their paths by name.

    ``objective`` defaults to the runs' ``optimized_metric``, ``direction`` to the Optuna
    sweeper's (else :func:`infer_direction`); the searched parameters come from the sweeper's
    config plus every override that differs between runs.
    """
    sweep_dir = Path(sweep_dir)
    settings = sweep_settings(sweep_dir)
    objective = objective or settings.objective or "val/mcc"
    direction = direction or settings.direction or infer_direction(objective)
    runs, varying, common = collect_runs(sweep_dir, searched=list(settings.params))
    ranked = rank_runs(runs, objective, direction)
    summary = seed_summary(ranked, varying, objective, direction)
    best = best_run(ranked, objective)
    paths = {name: sweep_dir / name for name in ("leaderboard.csv", "seed_summary.csv", "report.md", "best.yaml")}
    atomic_write_text(paths["leaderboard.csv"], ranked.to_csv(index=False))
    atomic_write_text(paths["seed_summary.csv"], summary.to_csv(index=False))
    atomic_write_text(paths["report.md"], render_markdown(sweep_dir, ranked, summary, varying, common, best,
                                                      objective, direction))
    atomic_write_text(paths["best.yaml"], yaml.safe_dump(best, sort_keys=False, allow_unicode=True) if best else "null\n")
    if plots:
        from lightquant.sweeps.trial_plots import plot_optimization_history, plot_parameters

        paths["optimization_history.png"] = plot_optimization_history(
            runs, objective, direction, sweep_dir / "optimization_history.png")
        if varying:
            log_scale = [k for k, spec in settings.params.items() if re.search(r"tag\([^)]*\blog\b", spec)]
            paths["parameters.png"] = plot_parameters(runs, varying, objective, direction,
                                                      sweep_dir / "parameters.png", log_scale=log_scale)
    log.info("Sweep report (%d runs, objective %s, %s): %s", len(ranked), objective, direction,
             paths["report.md"])
    return paths
