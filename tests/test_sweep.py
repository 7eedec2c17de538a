"""Optuna sweeps through train.py, and the sweep report (leaderboard, best run, seed summary, plots)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import create_optuna_distribution_from_override
from optuna.trial import TrialState

from lightquant.sweeps.__main__ import main as report_cli
from lightquant.sweeps.runs import collect_runs, parse_overrides
from lightquant.sweeps.summary import write_report

from .conftest import ROOT, TINY, make_cfg

PNG = b"\x89PNG\r\n\x1a\n"
SEARCHED = ["trainer.lr", "dataset.batch_size", "dataset.look_back_window", "model.hidden_size"]
# TINY without its hidden size: a value fixed on the command line would leave the search space
TINY_SWEEP = [o for o in TINY if not o.startswith("model.hidden_size=")]


def sweep(tmp_path: Path, sweep_dir: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python train.py hparams_search=optuna ...` on the tiny market, everything under tmp_path."""
    cmd = [sys.executable, "train.py", "hparams_search=optuna", *TINY_SWEEP, "trainer.epochs=1",
           f"hydra.sweep.dir={sweep_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
           f"paths.result_dir={tmp_path / 'result'}", *overrides]
    # one thread per process: several torch threads on a busy 2-core machine slow tiny LSTMs a lot
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------------ search space
def test_optuna_config_search_space_and_inclusive_range(tmp_path):
    cfg = make_cfg(tmp_path, ["hparams_search=optuna"])
    from hydra.core.hydra_config import HydraConfig

    s = HydraConfig.get().sweeper
    assert s._target_.endswith("OptunaSweeper") and s.sampler._target_ == "optuna.samplers.TPESampler"
    assert s.sampler.seed is not None and s.direction == "maximize" and cfg.optimized_metric == "val/mcc"
    assert list(s.params) == SEARCHED and s.max_failure_rate == 1.0
    assert HydraConfig.get().mode.name == "MULTIRUN"

    # The sweeper turns `range(3, 20)` into an integer distribution that includes 20.
    parser = OverridesParser.create()
    dists = {k: create_optuna_distribution_from_override(parser.parse_override(f"{k}={v}"))
             for k, v in s.params.items()}
    window = dists["dataset.look_back_window"]
    assert (window.low, window.high) == (3, 20)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = {study.ask()._suggest("w", window) for _ in range(400)}
    assert seen == set(range(3, 21))
    assert (dists["trainer.lr"].low, dists["trainer.lr"].high) == (1e-5, 1e-3)
    assert type(dists["trainer.lr"]).__name__ == "LogUniformDistribution"
    assert dists["dataset.batch_size"].choices == (32, 64, 128, 256)
    assert dists["model.hidden_size"].choices == (64, 128, 256)


# ------------------------------------------------------------------ reports on a hand-made multirun dir
def make_job(root: Path, name: str, overrides: list[str], metrics: dict | None) -> None:
    (root / name / ".hydra").mkdir(parents=True)
    (root / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (root / name / "metrics.json").write_text(json.dumps(metrics))


def fake_metrics(mcc: float, loss: float) -> dict:
    return {"model": "x", "seed": 0, "best_epoch": 3, "val": {"mcc": mcc, "loss": loss, "accuracy": 0.5},
            "test": {"mcc": mcc / 2, "loss": loss, "accuracy": 0.5, "per_horizon": {"1": {"mcc": 0.0}}}}


@pytest.fixture
def seed_sweep(tmp_path) -> Path:
    """`-m model=lstm,alstm seed=1,2,3` with known metrics, plus one job that failed."""
    root = tmp_path / "multirun"
    mcc = {("lstm", 1): 0.10, ("lstm", 2): 0.20, ("lstm", 3): 0.30, ("alstm", 1): 0.05, ("alstm", 2): 0.15}
    for i, ((model, seed), m) in enumerate(mcc.items()):
        make_job(root, str(i), [f"model={model}", f"seed={seed}", "trainer.epochs=2"], fake_metrics(m, 1 - m))
    make_job(root, "5", ["model=alstm", "seed=3", "trainer.epochs=2"], None)
    return root


def test_parse_overrides_reads_numbers():
    got = parse_overrides(["trainer.lr=1e-05", "dataset.batch_size=64", "model=alstm", "+extra=x", "a=b=c"])
    assert got == {"trainer.lr": 1e-05, "dataset.batch_size": 64, "model": "alstm", "extra": "x", "a": "b=c"}


def test_report_leaderboard_best_and_seed_summary(seed_sweep):
    paths = write_report(seed_sweep)  # objective val/mcc, maximize (no sweeper config to say otherwise)
    board = pd.read_csv(paths["leaderboard.csv"])
    assert list(board["job"]) == [2, 1, 4, 0, 3, 5]  # best first, the failed job last
    assert list(board["status"]) == ["ok"] * 5 + ["failed"]
    assert {"model", "seed", "val/mcc", "test/mcc", "test/per_horizon/1/mcc"} <= set(board.columns)
    assert "trainer.epochs" not in board.columns  # common to every job: in the report header instead

    summary = pd.read_csv(paths["seed_summary.csv"]).set_index("model")
    assert summary.loc["lstm", "n"] == 3 and summary.loc["alstm", "n"] == 2
    assert summary.loc["lstm", "val/mcc_mean"] == pytest.approx(0.2)
    assert summary.loc["lstm", "val/mcc_std"] == pytest.approx(0.1)  # sample std of .1, .2, .3
    assert summary.loc["alstm", "val/mcc_mean"] == pytest.approx(0.1)

    best = yaml.safe_load(paths["best.yaml"].read_text())
    assert best["job"] == "2" and best["objective"] == {"name": "val/mcc", "value": 0.3}
    assert best["command"] == "python train.py model=lstm seed=3 trainer.epochs=2"
    md = paths["report.md"].read_text()
    assert "0.2000 ± 0.1000" in md and "Common overrides: `trainer.epochs=2`" in md and "| failed |" in md
    for png in ("optimization_history.png", "parameters.png"):
        assert paths[png].read_bytes()[:8] == PNG


def test_report_minimising_the_loss(seed_sweep):
    paths = write_report(seed_sweep, objective="val/loss")  # a loss: minimised
    board = pd.read_csv(paths["leaderboard.csv"])
    assert board.loc[0, "job"] == 2 and board.loc[0, "val/loss"] == pytest.approx(0.7)
    assert "(minimize)" in paths["report.md"].read_text()


def test_report_cli(seed_sweep, tmp_path, capsys):
    assert report_cli([str(seed_sweep), "--objective", "test/mcc", "--no-plots"]) == 0
    assert "leaderboard.csv" in capsys.readouterr().out
    assert not (seed_sweep / "parameters.png").exists()
    assert report_cli([str(tmp_path / "empty")]) == 2
    runs, varying, common = collect_runs(seed_sweep)
    assert varying == ["model", "seed"] and common == {"trainer.epochs": 2} and len(runs) == 6


# ------------------------------------------------------------------ real sweeps through train.py
@pytest.mark.slow
def test_optuna_sweep_writes_results_report_and_plots_and_resumes_from_sqlite(tmp_path):
    db = tmp_path / "optuna.db"
    storage = [f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=test",  # absolute: 4 slashes
               "optimized_metric=val/rank_ic"]  # what quants rank signals by
    first = tmp_path / "sweep1"
    proc = sweep(tmp_path, first, "hydra.sweeper.n_trials=3", *storage)
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = yaml.safe_load((first / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == set(SEARCHED)
    board = pd.read_csv(first / "leaderboard.csv")
    assert len(board) == 3 and set(board["status"]) == {"ok"} and set(SEARCHED) <= set(board.columns)
    assert board.loc[0, "val/rank_ic"] == pytest.approx(result["best_value"])  # report and Optuna agree
    assert board["val/rank_ic"].is_monotonic_decreasing
    assert board["dataset.look_back_window"].between(3, 20).all() and board["trainer.lr"].between(1e-5, 1e-3).all()
    assert yaml.safe_load((first / "best.yaml").read_text())["command"].startswith("python train.py trainer.lr=")
    for png in ("optimization_history.png", "parameters.png", "0/curves.png", "2/curves.png"):
        assert (first / png).read_bytes()[:8] == PNG
    assert "## Leaderboard" in (first / "report.md").read_text()

    # Same storage and study name, another sweep dir: the study goes on where it stopped.
    proc = sweep(tmp_path, tmp_path / "sweep2", "hydra.sweeper.n_trials=1", *storage)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="test", storage=f"sqlite:///{db}")
    assert [t.number for t in study.trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len(pd.read_csv(tmp_path / "sweep2" / "leaderboard.csv")) == 1


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path):
    """lr=1e30 without clipping makes the training loss NaN: those trials fail, the others complete."""
    db = tmp_path / "optuna.db"
    out = tmp_path / "sweep"
    # sampler seed 5 draws lr 1e30, 1e30, 1e-3 for the three trials: two failures, then a success
    proc = sweep(tmp_path, out, "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.seed=5",
                 "trainer.lr=choice(0.001,1e30)", "trainer.gradient_clip_val=null",
                 f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=failing")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="failing", storage=f"sqlite:///{db}")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.FAIL) == 2 and states.count(TrialState.COMPLETE) == 1
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["status"]) == ["ok", "failed", "failed"]
    failed = board.loc[1, "job"]
    assert "Training loss became nan" in (out / str(failed) / "train.log").read_text()  # with its traceback
    assert "Failed experiment" in proc.stderr + proc.stdout
    assert (out / "optimization_results.yaml").is_file()


@pytest.mark.slow
def test_plain_multirun_over_seeds_gets_a_seed_summary(tmp_path):
    """`python train.py -m seed=1,2` (basic sweeper): the same report, mean ± std over the seeds."""
    out = tmp_path / "multirun"
    cmd = [sys.executable, "train.py", "-m", "seed=1,2", *TINY, "trainer.epochs=1", f"hydra.sweep.dir={out}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.result_dir={tmp_path / 'result'}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(out / "seed_summary.csv")
    assert len(summary) == 1 and summary.loc[0, "n"] == 2 and summary.loc[0, "val/mcc_std"] >= 0
    assert "± " in (out / "report.md").read_text()
    assert (out / "optimization_history.png").is_file()


@pytest.mark.slow
def test_a_sweep_whose_trials_all_fail_still_reports(tmp_path):
    out = tmp_path / "sweep"
    proc = sweep(tmp_path, out, "hydra.sweeper.n_trials=2", "trainer.lr=choice(1e30)", "trainer.gradient_clip_val=null")
    assert proc.returncode != 0  # Optuna's "No trials are completed yet" ends it, but the report is there
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["status"]) == ["failed", "failed"]
    assert board["error"].str.contains("Training loss became nan").all()
    assert "Training loss became nan" in (out / "report.md").read_text()


def test_a_diverged_run_is_failed_never_best(tmp_path):
    from lightquant.sweeps.runs import read_job
    from lightquant.training import optimized_metric

    with pytest.raises(FloatingPointError, match="exploded"):
        optimized_metric({"val": {"mcc": 0.3, "loss": 1e11}}, "val/mcc")
    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- trainer.lr=10\n")
    (job / "metrics.json").write_text('{"val": {"mcc": 0.3, "loss": 1e11}, "test": {}}')
    _, row = read_job(job, tmp_path)
    assert row["status"] == "failed" and "exploded" in row["error"]
