"""Hydra callback: the sweep report at the end of every multirun (Optuna sweeps and plain -m).

The report's tables are also refreshed after every job: when every trial of an Optuna sweep fails,
the plugin ends the sweep with Optuna's "No trials are completed yet" before any end-of-multirun
callback runs, and the sweep dir must still say what happened to each trial."""

from __future__ import annotations

import logging
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from lightquant.sweeps.summary import write_report

log = logging.getLogger(__name__)


def sweeper_direction(config: DictConfig) -> str | None:
    """The Optuna sweeper's direction (``maximize`` / ``minimize``), None for sweepers without one."""
    direction = config.hydra.sweeper.get("direction")
    if direction is None:
        return None
    if not isinstance(direction, str) and hasattr(direction, "__len__"):
        direction = direction[0]  # multi-objective: the report ranks by the first
    return str(direction).rsplit(".", 1)[-1]  # "Direction.maximize" -> "maximize"


def log_study(config: DictConfig) -> None:
    """Which Optuna study this sweep works (its name says what its trials share) and whether it
    resumes one: a sweep that silently joined an older study would mix incomparable trials."""
    sweeper = config.hydra.sweeper
    if sweeper.get("study_name") is None:
        return  # not the Optuna sweeper
    name, storage = str(sweeper.study_name), sweeper.get("storage")
    if storage is None:
        log.info("Optuna study %s, in memory (hydra.sweeper.storage=<url> keeps it to resume or share)", name)
        return
    import optuna
    from sqlalchemy.engine import make_url

    shown = repr(make_url(str(storage)))  # the password, if any, as ***
    try:
        held = {s.study_name: s.n_trials for s in optuna.study.get_all_study_summaries(storage=str(storage))}
    except Exception as e:  # the sweeper itself will say what is wrong with the storage
        log.warning("Optuna storage %s could not be read: %s", shown, e)
        return
    if name in held:
        log.info("Optuna study %s in %s: resuming it, %d trial(s) so far", name, shown, held[name])
    else:
        log.info("Optuna study %s in %s: a new study (same command again resumes it)", name, shown)


class SweepReport(Callback):
    """Registered in ``conf/hydra/default.yaml``; ``objective`` defaults to the config's ``optimized_metric``."""

    def __init__(self, objective: str | None = None, direction: str | None = None, plots: bool = True) -> None:
        self.objective = objective
        self.direction = direction
        self.plots = plots

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        log_study(config)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = str(config.hydra.sweep.dir)
        try:  # tables only (plots at the end): a few ms per job
            write_report(sweep_dir, self.objective or str(config.get("optimized_metric", "val/mcc")),
                         self.direction or sweeper_direction(config), plots=False)
        except Exception as e:  # a report problem must not fail the trial; on_multirun_end says it again
            log.warning("Sweep report of %s not refreshed: %s", sweep_dir, e)
            return
        if job_return is not None and getattr(job_return, "status", None) == JobStatus.FAILED:
            log.error("Trial failed; %s/report.md lists every trial so far with its error", sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        objective = self.objective or str(config.get("optimized_metric", "val/mcc"))
        try:
            write_report(sweep_dir, objective, self.direction or sweeper_direction(config), plots=self.plots)
        except Exception:
            log.error("The runs are in %s; once fixed, rerun the report with `python -m lightquant.sweeps %s`",
                      sweep_dir, sweep_dir)
            raise
