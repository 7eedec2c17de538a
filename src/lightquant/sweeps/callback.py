"""Hydra callback: the sweep report at the end of every multirun (Optuna sweeps and plain -m)."""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lightquant.sweeps.report import write_report

log = logging.getLogger(__name__)


def sweeper_direction(config: DictConfig) -> str | None:
    """The Optuna sweeper's direction (``maximize`` / ``minimize``), None for sweepers without one."""
    direction = config.hydra.sweeper.get("direction")
    if direction is None:
        return None
    if not isinstance(direction, str) and hasattr(direction, "__len__"):
        direction = direction[0]  # multi-objective: the report ranks by the first
    return str(direction).rsplit(".", 1)[-1]  # "Direction.maximize" -> "maximize"


class SweepReport(Callback):
    """Registered in ``conf/hydra/default.yaml``; ``objective`` defaults to the config's ``optimized_metric``."""

    def __init__(self, objective: str | None = None, direction: str | None = None, plots: bool = True) -> None:
        self.objective = objective
        self.direction = direction
        self.plots = plots

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(config.hydra.sweep.dir)
        objective = self.objective or str(config.get("optimized_metric", "val/mcc"))
        try:
            write_report(sweep_dir, objective, self.direction or sweeper_direction(config), plots=self.plots)
        except Exception:
            log.error("The runs are in %s; once fixed, rerun the report with `python -m lightquant.sweeps %s`",
                      sweep_dir, sweep_dir)
            raise
