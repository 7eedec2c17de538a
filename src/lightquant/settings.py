"""The trainer and dataset groups as typed dataclasses: types and ranges checked once, when a run's
config is read, with messages that name the key.

:func:`trainer_config` and :func:`dataset_settings` merge ``cfg.trainer`` / ``cfg.dataset`` into
OmegaConf structured configs: a wrong type or unknown key fails in the merge, a value out of range
in ``__post_init__``, before any data is read. The Trainer takes :class:`TrainerSettings` (a notebook
builds one directly, with the same checks). No torch here: the entry points check before torch loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from lightquant.choices import (
    DEVICES,
    EARLY_STOPPING_MODES,
    EPOCH_METRICS,
    LABEL_PRICES,
    LOSSES,
    NEWS_ALIGNMENTS,
    ON_JUMP,
    PRECISIONS,
    SHUFFLES,
)
from lightquant.errors import ConfigError


def check_integer(key: str, value: Any, low: int, none_ok: bool = False) -> None:
    """``key=value`` must be an integer >= ``low`` (or None with ``none_ok``); the error names the key."""
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} must be an integer >= {low}" + (", or null" if none_ok else ""))


def check_choice(key: str, value: Any, choices) -> None:
    """``value`` (as a string: YAML's 32 is an int) must be one of ``choices``."""
    if str(value) not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {list(choices)}")


def check_number(key: str, value: Any, low: float, strict: bool = False) -> None:
    """``value`` must be a number >= ``low`` (> with ``strict``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value > low if strict else value >= low)
    if not ok:  # NaN fails both comparisons
        raise ConfigError(f"{key}={value!r} must be a number {'>' if strict else '>='} {low}")


@dataclass
class EarlyStoppingSettings:
    """``trainer.early_stopping``: also the model selection (the run keeps the best epoch's weights)."""

    monitor: str = "val/mcc"  # any logged val/<metric>, or epoch (keep the last)
    mode: str = "max"
    patience: Optional[int] = 15  # None: never stop early, only select
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        check_choice("trainer.early_stopping.mode", self.mode, EARLY_STOPPING_MODES)
        check_integer("trainer.early_stopping.patience", self.patience, 1, none_ok=True)


@dataclass
class PenaltySettings:
    """``trainer.penalty``: ``weight * sum(w**2) / 2`` over the parameters ``params`` names (fnmatch)."""

    weight: float = 0.0
    params: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_number("trainer.penalty.weight", self.weight, 0)
        if self.weight > 0 and not self.params:
            raise ConfigError(f"trainer.penalty.weight={self.weight} needs trainer.penalty.params (e.g. [fc.weight])")


@dataclass
class TrainerSettings:
    """What the Trainer acts on (conf/trainer/default.yaml documents each)."""

    epochs: int = 100
    early_stopping: EarlyStoppingSettings = field(default_factory=EarlyStoppingSettings)
    gradient_clip_val: Optional[float] = None
    eval_batch_size: int = 1024
    precision: str = "32"
    accumulate_grad_batches: int = 1
    find_unused_parameters: bool = False
    loss: str = "bce"
    penalty: PenaltySettings = field(default_factory=PenaltySettings)
    shuffle: str = "epoch"
    limit_train_batches: Optional[int] = None
    overfit_batches: int = 0
    progress: Optional[bool] = None  # a progress bar per long epoch; None: on a terminal

    def __post_init__(self) -> None:
        self.precision = str(self.precision)  # 32 in YAML is an int
        check_integer("trainer.epochs", self.epochs, 1)
        check_integer("trainer.eval_batch_size", self.eval_batch_size, 1)
        check_integer("trainer.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        check_integer("trainer.limit_train_batches", self.limit_train_batches, 1, none_ok=True)
        check_integer("trainer.overfit_batches", self.overfit_batches, 0)
        if self.gradient_clip_val is not None:
            check_number("trainer.gradient_clip_val", self.gradient_clip_val, 0, strict=True)
        check_choice("trainer.precision", self.precision, PRECISIONS)
        check_choice("trainer.loss", self.loss, LOSSES)
        check_choice("trainer.shuffle", self.shuffle, SHUFFLES)


@dataclass
class TrainerConfig(TrainerSettings):
    """The whole ``trainer`` group: the Trainer's settings and what ``training.train`` sets up around it."""

    lr: float = 3.0e-4
    weight_decay: float = 1.0e-4
    optimizer: Any = None  # a _partial_ optimizer node, called with the model's parameters
    scheduler: Any = None  # a _partial_ scheduler node, or None for a constant lr
    num_threads: Optional[int] = None
    device: str = "auto"
    gpu_id: int = 0
    deterministic: bool = True
    resume: Optional[str] = None
    init_from: Optional[str] = None
    profile_steps: int = 0
    distributed: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("trainer.lr", self.lr, 0, strict=True)
        check_number("trainer.weight_decay", self.weight_decay, 0)
        check_integer("trainer.num_threads", self.num_threads, 1, none_ok=True)
        check_integer("trainer.gpu_id", self.gpu_id, 0)
        check_integer("trainer.profile_steps", self.profile_steps, 0)
        check_choice("trainer.device", self.device, DEVICES)
        # the run's evaluation logs these (the engine itself can monitor any metric its scorer gives)
        split, _, key = self.early_stopping.monitor.partition("/")
        if self.early_stopping.monitor != "epoch" and (split != "val" or key not in EPOCH_METRICS):
            raise ConfigError(f"trainer.early_stopping.monitor={self.early_stopping.monitor!r}: use val/<metric> with "
                              f"<metric> one of {list(EPOCH_METRICS)}, or epoch (keep the last epoch)")


def check_market_arguments(*, look_back_window: int, text_lag_days: int | None, require_text_days: bool,
                           up_threshold: float, down_threshold: float, label_price: str, news_alignment: str,
                           on_jump: str, **_: Any) -> None:
    """The ranges and choices of ``build_market_data``'s arguments (the others need no check here):
    :class:`DatasetSettings` checks a config with it, ``build_market_data`` its plain arguments (a
    notebook's), both before any work."""
    check_integer("dataset.look_back_window", look_back_window, 1)
    check_integer("dataset.text_lag_days", text_lag_days, 1, none_ok=True)
    if require_text_days and text_lag_days is None:
        raise ConfigError("dataset.require_text_days=true needs dataset.text_lag_days (the calendar days of the lag)")
    if require_text_days and look_back_window < text_lag_days:
        raise ConfigError(f"dataset.require_text_days checks {text_lag_days} lag steps, more than the "
                          f"dataset.look_back_window={look_back_window} days of a window; use a window >= text_lag_days")
    if down_threshold > up_threshold:
        raise ConfigError(f"dataset.label.down_threshold={down_threshold} > up_threshold={up_threshold}; samples "
                          "with return in [down, up) are dropped, so down must be <= up")
    check_choice("dataset.label.price", label_price, LABEL_PRICES)
    check_choice("dataset.news_alignment", news_alignment, NEWS_ALIGNMENTS)
    check_choice("dataset.on_jump", on_jump, ON_JUMP)


@dataclass
class LabelSettings:
    """``dataset.label``: up when the next day's return (of ``price``) is >= up_threshold, down when it is
    < down_threshold; returns in between are dropped."""

    price: str = "close"
    up_threshold: float = 0.0
    down_threshold: float = 0.0


@dataclass
class SplitSettings:
    """``dataset.splits``: inclusive target-day bounds (YYYY-MM-DD); all null: the last 10 % test, 10 % validation."""

    train_start: Optional[str] = None
    train_end: Optional[str] = None
    val_end: Optional[str] = None
    test_end: Optional[str] = None


@dataclass
class DatasetSettings:
    """The ``dataset`` group (conf/dataset/*.yaml document each key)."""

    name: str = MISSING
    source: Any = MISSING  # the source's _target_ node
    features: List[str] = field(default_factory=lambda: ["open", "high", "low", "close", "volume"])
    look_back_window: int = 7
    batch_size: int = 64
    splits: SplitSettings = field(default_factory=SplitSettings)
    label: LabelSettings = field(default_factory=LabelSettings)
    normalize: bool = True
    max_jump: Optional[float] = 3.0
    on_jump: str = "warn"
    max_num_tweets_len: int = 20
    n_stocks: Optional[int] = None
    news_alignment: str = "next"
    text_lag_days: Optional[int] = None
    require_text_days: bool = False
    market: Any = None  # the backtest's trading rules (lightquant.evaluation.backtest.MarketRules checks them)
    backtest_caution: Optional[str] = None  # said beside every backtest of this data (the synthetic market's)
    root: Optional[str] = None  # folders the source's paths interpolate
    price_dirs: Optional[List[str]] = None
    news_dirs: Optional[List[str]] = None

    def __post_init__(self) -> None:
        check_integer("dataset.batch_size", self.batch_size, 1)
        check_integer("dataset.max_num_tweets_len", self.max_num_tweets_len, 1)
        check_integer("dataset.n_stocks", self.n_stocks, 1, none_ok=True)
        check_market_arguments(**self.market_arguments())

    def market_arguments(self) -> dict[str, Any]:
        """``build_market_data``'s keyword arguments, as this config sets them."""
        return {"features": list(self.features), "look_back_window": self.look_back_window,
                "splits": asdict(self.splits), "label_price": self.label.price,
                "up_threshold": self.label.up_threshold, "down_threshold": self.label.down_threshold,
                "normalize": self.normalize, "news_alignment": self.news_alignment,
                "text_lag_days": self.text_lag_days, "require_text_days": self.require_text_days,
                "max_jump": self.max_jump, "on_jump": self.on_jump}


def _typed(node: DictConfig, schema: type, prefix: str):
    """``node`` (resolved) merged into ``schema`` and built, so its checks run; errors name ``prefix.<key>``."""
    container = OmegaConf.to_container(node, resolve=True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), container))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        if isinstance(e, ConfigKeyError):  # a typo: list the keys there are at that level
            owner = getattr(e, "object_type", None) or schema
            known = ", ".join(getattr(owner, "__dataclass_fields__", {}))
            raise ConfigError(f"{prefix}.{key}: unknown key; the keys there are {known}") from None
        raise ConfigError(f"{prefix}.{key}: {str(e).splitlines()[0]}") from None


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """``cfg.trainer`` as a checked :class:`TrainerConfig` (interpolations resolved)."""
    return _typed(cfg.trainer, TrainerConfig, "trainer")


def dataset_settings(cfg: DictConfig) -> DatasetSettings:
    """``cfg.dataset`` as a checked :class:`DatasetSettings` (interpolations resolved)."""
    return _typed(cfg.dataset, DatasetSettings, "dataset")
