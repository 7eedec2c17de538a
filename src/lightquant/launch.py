"""What the launcher's environment says, and the config resolvers built on it; no torch.

Hydra resolves ``hydra.run.dir`` before the task function runs, so the entry points register
these resolvers at import, before torch is imported (a config typo then fails in seconds).
Under torchrun every rank composes the config itself (conf/hydra/default.yaml): one run dir
named by torchrun's run id, ``.hydra/`` from rank 0 only, and rank r > 0 logging to
``train.rank<r>.log``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightquant.errors import ConfigError


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_rank() -> int:
    """Global rank from the launcher's environment (0 without one); valid before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def run_name(default: str) -> str:
    """The run dir's name: ``default`` (a time stamp) for one process. Under torchrun every rank
    resolves the config itself and their ``${now:}`` stamps can straddle a second, so the name is
    the launcher's run id, the same in every rank (random with --standalone, --rdzv_id otherwise)."""
    if not launched_by_torchrun():
        return default
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id == "none":  # a static multi-node launch without --rdzv_id
        raise ConfigError(
            "torchrun gave no run id for the shared run dir: pass --rdzv_id=<unique name> to torchrun "
            "(the same on every node), or set hydra.run.dir=<dir> on every node"
        )
    return run_id


def main_only(value: str) -> str | None:
    """``value`` on rank 0, None on other ranks (e.g. Hydra's output_subdir: one .hydra/ per run)."""
    return value if env_rank() == 0 else None


def rank_suffix() -> str:
    """'' on rank 0, '.rank<r>' on rank r > 0: each rank's own log file in the shared run dir."""
    r = env_rank()
    return "" if r == 0 else f".rank{r}"


#: task overrides that change where a trial's files go or how fast it runs, not what it computes
_NOT_STUDY_IDENTITY = ("paths.", "tracker", "trainer.num_threads", "trainer.progress")


def study_key(dataset: str, model: str, use_news: bool, objective: str, direction: Any, params: Any,
              overrides: Any) -> str:
    """8 hex digits naming what makes an Optuna study's trials comparable: the dataset, model,
    use_news, the objective and its direction, the searched space and every other task override
    (sorted; paths, tracking and thread counts excluded). A changed setting starts a new study; the
    same command, rerun, resumes its study (the sweeper's n_trials and storage are not part of it)."""
    container = OmegaConf.to_container(params, resolve=False) if isinstance(params, DictConfig) else params or {}
    task = [str(o) for o in (overrides or []) if not str(o).lstrip("+~").startswith(_NOT_STUDY_IDENTITY)]
    what = {"dataset": dataset, "model": model, "use_news": bool(use_news), "objective": objective,
            "direction": str(direction), "params": {k: str(v) for k, v in sorted(container.items())},
            "overrides": sorted(task)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]


def trials_at_once(launcher_jobs: Any) -> int:
    """The Optuna sweeper's batch: the joblib launcher's n_jobs (-1 = every core), else 1."""
    if launcher_jobs is None:
        return 1
    n = int(launcher_jobs)
    return os.cpu_count() or 1 if n < 0 else max(n, 1)


RESOLVERS = {
    # model configs derive sizes from the data config instead of repeating them:
    # `${lq.len:${dataset.features}}` -> input_size; `${lq.news_size:${use_news},${encoder.dim}}`
    # -> the news embedding size a price model fuses (0 without news)
    "lq.len": lambda xs: len(xs),
    "lq.news_size": lambda use_news, dim: int(dim) if use_news else 0,
    "lq.run_name": run_name,
    "lq.main_only": main_only,
    "lq.rank_suffix": rank_suffix,
    "lq.pid": os.getpid,  # default run dirs of processes started in the same second differ (<time>_<pid>)
    "lq.study_key": study_key,  # hparams_search/optuna.yaml's default study name
    "lq.trials_at_once": trials_at_once,
}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
