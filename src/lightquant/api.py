"""The notebook API: compose the config ``python train.py <overrides>`` would run, and train it,
without a Hydra app.

    import lightquant
    cfg = lightquant.compose("model=alstm", "trainer.epochs=3")
    metrics = lightquant.train(cfg)

A Hydra app fills ``${hydra:...}`` (the model's name, the run dir) while it runs; here
``compose`` registers the composed Hydra config the same way, and every ``train`` call gets a
fresh run dir named as ``train.py`` names them. A config from ``hydra.compose`` itself works too
when composed with ``return_hydra_config=True``.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from lightquant.errors import ConfigError

#: conf/ of this checkout (the package is installed editable from it); LIGHTQUANT_ROOT overrides
CONF = Path(os.environ.get("LIGHTQUANT_ROOT", Path(__file__).resolve().parents[2])) / "conf"
_runs = itertools.count(1)  # several train() calls in one second still get apart run dirs

#: the tiny market: one year of 8 synthetic stocks (half a year of training days), so a whole run takes
#: seconds; the test suite's configs and the benchmarks' smoke mode build on it
TINY_MARKET = ("dataset.source.n_stocks=8", "dataset.source.end=2022-12-30",
               "dataset.splits.train_end=2022-06-30", "dataset.splits.val_end=2022-09-30")


def compose(*overrides: str, config_name: str = "train") -> DictConfig:
    """The config of ``python train.py <overrides>`` (``config_name``: train, evaluate, predict)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lightquant.launch import register_resolvers

    if not (CONF / f"{config_name}.yaml").is_file():
        raise ConfigError(f"no {config_name}.yaml in {CONF}: set LIGHTQUANT_ROOT to the LightQuant checkout")
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)


def _runtime(cfg: DictConfig) -> DictConfig:
    """A copy of ``cfg`` whose ``${hydra:...}`` values resolve as in a ``train.py`` run, with a fresh
    run dir; the Hydra node registered for the resolver and dropped from the task config."""
    from hydra.core.hydra_config import HydraConfig

    if "hydra" not in cfg:
        if HydraConfig.initialized():  # inside a Hydra app (or after compose): its values stand
            return cfg
        raise ConfigError("this config was composed without its Hydra part: compose it with "
                          "lightquant.compose(...) or hydra.compose(..., return_hydra_config=True)")
    cfg = cfg.copy()
    HydraConfig.instance().set_config(cfg)  # run.dir names the model through ${hydra:runtime.choices.model}
    stamp = f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}_{next(_runs)}"
    with read_write(cfg.hydra), open_dict(cfg.hydra):  # set_config made the Hydra node read-only
        cfg.hydra.run.dir = str(Path(cfg.hydra.run.dir).parent / stamp)
        cfg.hydra.runtime.output_dir = str(Path(cfg.hydra.run.dir).resolve())
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
        # the values read from the Hydra node, fixed now: a later compose() replaces that node
        for key in ("model_name", "paths.output_dir", "output_dir"):
            node = OmegaConf.select(cfg, key, throw_on_missing=False)
            if node is not None:
                OmegaConf.update(cfg, key, node, merge=False)
    return cfg


def train(cfg: DictConfig, callbacks: tuple = ()) -> dict[str, Any]:
    """``python train.py`` for a composed config: returns the run's metrics (``metrics.json``).
    Set ``tracker=swanlab`` in the overrides for tracking; the default follows conf/tracker."""
    from lightquant.training import train_tracked

    cfg = _runtime(cfg)
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _run_log(out_dir / "train.log"):
        return train_tracked(cfg, callbacks)


@contextmanager
def _run_log(path: Path) -> Iterator[None]:
    """What Hydra's job logging gives a ``train.py`` run: INFO lines on the console (unless the
    notebook set up logging itself) and in the run's ``train.log``."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(levelname)s] %(message)s")
    level = root.level
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
