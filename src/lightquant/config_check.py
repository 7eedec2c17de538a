"""Checks of a composed config that run before any data is read.

A typo in a size or rate should cost a second, not the minutes of data loading and
training before the first use of the value. This module imports nothing heavy: the entry
points call it before importing torch, so enumerated values (lightquant.choices) and numbers
fail in about two seconds; then the market rules are checked (pandas) and the model is built
once from its config (torch; its constructor validates every argument)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightquant.choices import (
    DEVICES,
    FINAL_METRICS,
    INITS,
    SPLITS,
    STRATEGIES,
    SWANLAB_MODES,
)
from lightquant.errors import ConfigError
from lightquant.settings import check_choice, check_integer, check_number, dataset_settings, trainer_config

#: a name that becomes a folder or file name (dataset.name, model_name): no separators, no ".."
SAFE_NAME = re.compile(r"^[\w][\w.+-]*$")


def _choices(cfg: DictConfig, pairs) -> None:
    for key, choices in pairs:
        v = OmegaConf.select(cfg, key)
        if v is not None:
            check_choice(key, v, choices)


def _integers(cfg: DictConfig, keys, low: int = 1) -> None:
    for key in keys:
        v = OmegaConf.select(cfg, key)
        if v is not None:
            check_integer(key, v, low)


def _backtest(cfg: DictConfig) -> None:
    _choices(cfg, [("backtest.strategy", STRATEGIES)])
    _integers(cfg, ["backtest.top_k", "backtest.hold_days"])
    cost = OmegaConf.select(cfg, "backtest.cost_bps")
    if cost is not None:
        check_number("backtest.cost_bps", cost, 0)
    bench = OmegaConf.select(cfg, "backtest.benchmark")
    if bench not in (None, "equal_weight") and not Path(str(bench)).is_file():
        raise ConfigError(f"backtest.benchmark={bench!r}: no such index file; give a CSV with Date and Close "
                               "columns, or equal_weight")


def validate_tool_config(cfg: DictConfig) -> None:
    """The checks of :func:`validate_config` for ``evaluate.py`` and ``predict.py``: before the model is read."""
    _choices(cfg, [("split", SPLITS), ("device", DEVICES)])
    _integers(cfg, ["gpu_id"], low=0)
    _integers(cfg, ["batch_size"])
    _integers(cfg, ["top_news"], low=0)
    _backtest(cfg)
    if "date" in cfg:
        parse_day(cfg.date)


def parse_day(value) -> np.datetime64 | None:
    """``date=`` as a day (``None``/``"latest"``: the data's last day)."""
    if value is None or str(value).lower() == "latest":
        return None
    try:
        return np.datetime64(str(value), "D")
    except ValueError as e:
        raise ConfigError(f"date={value!r} is not a day: use YYYY-MM-DD, or latest (the data's last day)") from e


def _market(cfg: DictConfig) -> None:
    market = OmegaConf.select(cfg, "dataset.market")
    if market is not None:
        from lightquant.evaluation.backtest import MarketRules  # pandas: after the quick checks

        MarketRules.from_config(OmegaConf.to_container(market, resolve=True))


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` (or the model's own ValueError) for settings that cannot work."""

    def get(key: str):
        return OmegaConf.select(cfg, key)

    trainer_config(cfg)  # the trainer and dataset groups' types and ranges (lightquant.settings)
    dataset_settings(cfg)
    _integers(cfg, ("model.hidden_size",))
    check_integer("seed", get("seed"), 0)
    for key, value in (("dataset.name", get("dataset.name")), ("model_name", cfg.get("model_name"))):
        if value is not None and (not isinstance(value, str) or not SAFE_NAME.match(value) or ".." in value):
            raise ConfigError(f"{key}={value!r} names output folders and files: use letters, digits, '_', '-', '.' "
                              "(no path separators, no '..')")
    _choices(cfg, [("tracker.mode", SWANLAB_MODES), ("model.init", INITS)])
    _backtest(cfg)
    metric = cfg.get("optimized_metric")
    split, _, key = str(metric).partition("/")
    if metric is not None and (split not in ("val", "test") or key not in FINAL_METRICS):
        raise ConfigError(f"optimized_metric={metric!r}: use <split>/<metric>, e.g. val/mcc, with <split> val or "
                          f"test and <metric> one of {list(FINAL_METRICS)}")
    dropout = get("model.dropout")
    if dropout is not None and not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ConfigError(f"model.dropout={dropout!r} must be in [0, 1)")
    if get("model.seq_len") is not None and get("model.seq_len") != get("dataset.look_back_window"):
        raise ConfigError(
            f"model.seq_len={get('model.seq_len')} differs from dataset.look_back_window={get('dataset.look_back_window')}; "
            "leave model.seq_len at its default ${dataset.look_back_window}"
        )
    news_size = get("model.news_size") or 0
    if news_size and not cfg.use_news:
        raise ConfigError(
            f"model={cfg.model_name} reads news (model.news_size={news_size}): run with use_news=true"
            + (" (or model.use_text=false model.news_size=0 for its price-only variant)" if get("model.use_text") is not None else "")
        )
    _market(cfg)
    # The source and encoder constructors check their values and read nothing; a source without
    # texts says so (``no_texts``: why, and the fix). Built from a resolved copy: instantiating the node
    # itself resolves the interpolated lists it points at (dataset.price_dirs) in the run's config.
    for key in ("dataset.source", "encoder") if cfg.use_news else ():
        try:
            built = get(key) and instantiate(OmegaConf.to_container(get(key), resolve=True))
        except InstantiationException as e:
            raise ConfigError(f"{key}: {e.__cause__ or e}") from e
        if getattr(built, "no_texts", None):
            raise ConfigError(f"use_news=true but dataset {cfg.dataset.name} {built.no_texts}")
    # Build the model once: its constructor checks every argument against the others.
    # Sizes the data fills in (null in conf/model/) get placeholders; vocab_size 2 builds the word-level
    # encoder too, so its settings are checked whichever encoder this run uses.
    from lightquant.builder import model_needs  # torch: the model's module is imported to build it anyway

    placeholders = {"num_stocks": 1, "vocab_size": 2}
    extra = {k: placeholders[k] for k in model_needs(cfg).from_data if get(f"model.{k}") is None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SCINet's padding note: said again when the real model is built
        try:
            instantiate(cfg.model, **extra)
        except InstantiationException as e:  # Hydra's wrapper hides the model's own message
            raise ConfigError(f"model={cfg.model_name}: {e.__cause__ or e}") from e
