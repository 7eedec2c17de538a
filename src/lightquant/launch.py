"""What the launcher's environment says, and the config resolvers built on it; no torch.

Hydra resolves ``hydra.run.dir`` before the task function runs, so the entry points register
these resolvers at import, before torch is imported (a config typo then fails in seconds).
Under torchrun every rank composes the config itself (conf/hydra/default.yaml): one run dir
named by torchrun's run id, ``.hydra/`` from rank 0 only, and rank r > 0 logging to
``train.rank<r>.log``.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

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
}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
