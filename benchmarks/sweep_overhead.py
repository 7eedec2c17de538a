"""Section 6: sweep overhead. A real Optuna sweep (``python train.py hparams_search=optuna``)
with the data cache already filled; per trial, its wall time minus its training time.

Trial boundaries come from the run dirs the sweep leaves: the first and last timestamped line
of each trial's ``train.log``; training time is the sum of the trial's epoch times
(``time/epoch_s`` in the history of ``checkpoints/last.pt``: training plus validation). So
"in-trial overhead" = data loading from the cache, model building, test evaluation,
predictions, backtest, leaderboard row, checkpoints; "between trials" = Hydra and Optuna
(composition, sampling, job dir and logging setup).
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from benchmarks.common import PLAN, ROOT, Section, Settings, Table, build, child_env, fmt

DESCRIPTION = (
    "Wall time of each trial of an Optuna sweep (`python train.py hparams_search=optuna`, trials one after "
    "another in one process, tracker disabled) minus its training time, after the data cache was filled. "
    "Trial wall time runs from the first to the last line of the trial's `train.log`; training time is the "
    "sum of its epochs (`time/epoch_s`: training + validation). *In-trial* overhead is everything else "
    "inside `lightquant.training.train` (cached data load, model build, test evaluation, predictions, backtest, "
    "leaderboard row, checkpoint writes); *between trials* is the sweeper's own time (Optuna sampling, "
    "Hydra composition, job directory and logging setup)."
)
_TS = "%Y-%m-%d %H:%M:%S,%f"


def _log_span(log: Path) -> tuple[float, float]:
    stamps = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("[") and "]" in line:
            try:
                stamps.append(datetime.strptime(line[1:line.index("]")], _TS).timestamp())
            except ValueError:
                continue
    if not stamps:
        raise ValueError(f"no timestamped lines in {log}")
    return stamps[0], stamps[-1]


def _short(override: str) -> str:
    """``trainer.lr=0.0007744496818914617`` -> ``lr=0.000774``"""
    key, _, value = override.partition("=")
    try:
        value = f"{float(value):.3g}" if "." in value or "e" in value else value
    except ValueError:
        pass
    return f"{key.rsplit('.', 1)[-1]}={value}"


def _training_seconds(run_dir: Path) -> tuple[float, int]:
    import torch

    hist = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["history"]
    return sum(float(r["time/epoch_s"]) for r in hist), len(hist)


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA

    t0 = time.perf_counter()
    trials, epochs = s.pick(2, 4, 10), s.pick(1, 2, 3)
    data = SMOKE_DATA if s.mode == "smoke" else ["dataset.source.n_stocks=20", "model.hidden_size=64"]
    cache = s.out_dir / "cache"
    model = f"model={PLAN['price_model']}"
    build([model, *data], cache)  # fill the panel cache the trials will read
    sweep_dir = s.out_dir / "sweep" / time.strftime("%Y%m%d-%H%M%S")
    fixed = [model, *data, "dataset.batch_size=256", f"trainer.epochs={epochs}"]
    cmd = [sys.executable, "train.py", "hparams_search=optuna", f"hydra.sweeper.n_trials={trials}", *fixed,
           f"hydra.sweep.dir={sweep_dir}", f"paths.cache_dir={cache}", f"paths.result_dir={s.out_dir / 'sweep_result'}",
           "export=false", "tracker=disabled"]
    launch = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, env=child_env(s.threads), capture_output=True, text=True, check=False)
    finish = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"sweep failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    runs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and (d / "train.log").exists()), key=lambda d: int(d.name))
    spans = [_log_span(d / "train.log") for d in runs]
    rows, per = [], []
    for i, d in enumerate(runs):
        train_s, n_ep = _training_seconds(d)
        start, end = spans[i]
        between = spans[i + 1][0] - end if i + 1 < len(runs) else float("nan")
        in_trial = (end - start) - train_s
        overrides = (d / ".hydra" / "overrides.yaml").read_text() if (d / ".hydra" / "overrides.yaml").exists() else ""
        sampled = ", ".join(_short(o.strip("- '\"")) for o in overrides.splitlines()
                            if any(k in o for k in ("trainer.lr", "look_back_window")))
        cycle = (spans[i + 1][0] - start) if i + 1 < len(runs) else float("nan")
        rows.append([i, sampled, n_ep, fmt(end - start), fmt(train_s), fmt(in_trial), fmt(between),
                     fmt((cycle - train_s) / cycle * 100, 0) + " %" if not math.isnan(cycle) else "—"])
        per.append({"trial": i, "wall_s": end - start, "train_s": train_s, "in_trial_s": in_trial,
                    "between_s": between, "cycle_s": cycle})
    sec = Section(6, "Sweep overhead", DESCRIPTION)
    shown = " ".join(c for c in cmd[1:] if not c.startswith(("hydra.sweep.dir=", "paths.")))
    sec.notes.append(f"The sweep: `python {shown}` (plus paths under the results dir).")
    sec.tables.append(Table(
        f"{trials} trials of `{' '.join(fixed)}` (searched: trainer.lr, dataset.look_back_window); seconds on this machine",
        ["trial", "sampled", "epochs", "trial wall s", "training s", "in-trial overhead s", "to next trial s",
         "overhead share of the cycle"], rows))
    med_in = statistics.median(p["in_trial_s"] for p in per)
    betweens = [p["between_s"] for p in per if p["between_s"] == p["between_s"]]
    sec.notes.append(
        f"Median overhead per trial: {med_in:.2f} s inside the trial + "
        f"{statistics.median(betweens) if betweens else float('nan'):.2f} s between trials. Once per sweep: "
        f"{spans[0][0] - launch:.1f} s from launch to the first trial's first line (interpreter, imports, "
        f"Optuna study) and {finish - spans[-1][1]:.1f} s after the last trial (sweep report, plots, exit).")
    sec.data = {"trials": per, "startup_s": spans[0][0] - launch, "finish_s": finish - spans[-1][1],
                "command": " ".join(cmd[1:])}
    sec.seconds = time.perf_counter() - t0
    return sec
