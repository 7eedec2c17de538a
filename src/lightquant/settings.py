"""The trainer group's settings as typed dataclasses: types and ranges checked once, when a run's
config is read, with messages that name the key.

:func:`trainer_config` merges a composed ``cfg.trainer`` into :class:`TrainerConfig` (OmegaConf's
structured configs): a wrong type or an unknown key fails there, a value out of range in the
dataclasses' ``__post_init__``, before any data is read. The Trainer takes the result as its one
settings object (:class:`TrainerSettings`, the part it acts on); a notebook builds one directly,
``TrainerSettings(epochs=20)``, with the same checks. No torch here: the entry points check a
config before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightquant.choices import DEVICES, EARLY_STOPPING_MODES, EPOCH_METRICS, LOSSES, PRECISIONS, SHUFFLES
from lightquant.errors import ConfigError


def _integer(key: str, value: Any, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key}={value!r} must be an integer >= {low}" + (", or null" if none_ok else ""))


def _choice(key: str, value: Any, choices) -> None:
    if str(value) not in choices:
        raise ConfigError(f"{key}={value!r}; choose one of {list(choices)}")


def _at_least(key: str, value: Any, low: float, strict: bool = False) -> None:
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
        _choice("trainer.early_stopping.mode", self.mode, EARLY_STOPPING_MODES)
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)
                                          or self.patience < 1):
            raise ConfigError(f"trainer.early_stopping.patience={self.patience} must be an integer >= 1, "
                              "or null to never stop early")


@dataclass
class PenaltySettings:
    """``trainer.penalty``: ``weight * sum(w**2) / 2`` over the parameters ``params`` names (fnmatch)."""

    weight: float = 0.0
    params: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _at_least("trainer.penalty.weight", self.weight, 0)
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
        _integer("trainer.epochs", self.epochs, 1)
        _integer("trainer.eval_batch_size", self.eval_batch_size, 1)
        _integer("trainer.accumulate_grad_batches", self.accumulate_grad_batches, 1)
        _integer("trainer.limit_train_batches", self.limit_train_batches, 1, none_ok=True)
        _integer("trainer.overfit_batches", self.overfit_batches, 0)
        if self.gradient_clip_val is not None:
            _at_least("trainer.gradient_clip_val", self.gradient_clip_val, 0, strict=True)
        _choice("trainer.precision", self.precision, PRECISIONS)
        _choice("trainer.loss", self.loss, LOSSES)
        _choice("trainer.shuffle", self.shuffle, SHUFFLES)


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
        _at_least("trainer.lr", self.lr, 0, strict=True)
        _at_least("trainer.weight_decay", self.weight_decay, 0)
        _integer("trainer.num_threads", self.num_threads, 1, none_ok=True)
        _integer("trainer.gpu_id", self.gpu_id, 0)
        _integer("trainer.profile_steps", self.profile_steps, 0)
        _choice("trainer.device", self.device, DEVICES)
        # the run's evaluation logs these (the engine itself can monitor any metric its scorer gives)
        split, _, key = self.early_stopping.monitor.partition("/")
        if self.early_stopping.monitor != "epoch" and (split != "val" or key not in EPOCH_METRICS):
            raise ConfigError(f"trainer.early_stopping.monitor={self.early_stopping.monitor!r}: use val/<metric> with "
                              f"<metric> one of {list(EPOCH_METRICS)}, or epoch (keep the last epoch)")


def trainer_config(cfg: DictConfig) -> TrainerConfig:
    """``cfg.trainer`` as a checked :class:`TrainerConfig` (interpolations resolved)."""
    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainerConfig), node))
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        known = ", ".join(f.name for f in TrainerConfig.__dataclass_fields__.values())
        hint = f"; the trainer settings are {known}" if "not in" in str(e) else ""
        raise ConfigError(f"trainer.{key}: {str(e).splitlines()[0]}{hint}") from None
