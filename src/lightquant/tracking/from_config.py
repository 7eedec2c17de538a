"""The Hydra edge of tracking: ``cfg.tracker`` + the Hydra runtime -> a started tracker."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lightquant.tracking.rank import global_rank
from lightquant.tracking.swanlab_tracker import Tracker, start_tracker


def tracker_from_config(cfg: DictConfig) -> Tracker:
    """Start the run's tracker; use it as ``with tracker_from_config(cfg) as tracker: ...``."""
    t = cfg.tracker
    run_dir = str(Path(cfg.paths.output_dir).resolve())
    name, group = str(t.experiment_name), None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hc = HydraConfig.get()
        group = Path(hc.sweep.dir).name  # the trials of one sweep form one group in the dashboard
        name = f"{name}-{hc.job.num}"
    config = OmegaConf.to_container(cfg, resolve=True)  # plain values: trackers cannot resolve ${...}
    config["run_dir"] = run_dir
    return start_tracker(
        mode=str(t.mode),
        project=str(t.swanlab_project),
        workspace=t.swanlab_workspace,
        experiment_name=name,
        log_dir=str(t.log_dir),
        config=config,
        group=group,
        tags=list(t.tags),
        description=f"run dir: {run_dir}",
        probes=bool(t.probes),
        rank=global_rank(),
    )
