"""Early stopping and model selection on a validation metric.

``monitor`` is any logged ``val/<metric>`` (loss, accuracy, mcc, f1, ...); the epoch with its
best value is the one whose weights the run keeps (the first such epoch on ties). ``patience:
null`` never stops early: every epoch runs and only the selection acts, as the papers' "test at
the best-validation-accuracy epoch" rule (conf/experiment/paper/).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lightquant.settings import EarlyStoppingSettings


@dataclass
class EarlyStopping(EarlyStoppingSettings):
    """The settings (checked by :class:`~lightquant.settings.EarlyStoppingSettings`) and the state."""

    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0

    def step(self, metrics: dict[str, float], epoch: int) -> bool:
        """Record this epoch; True when it is the new best."""
        if self.monitor not in metrics:
            raise KeyError(f"trainer.early_stopping.monitor={self.monitor!r} is not a logged metric; have {sorted(metrics)}")
        value = metrics[self.monitor]
        sign = 1.0 if self.mode == "max" else -1.0
        improved = math.isfinite(value) and (
            self.best is None or sign * (value - self.best) > self.min_delta
        )
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def epochs_left(self) -> int | None:
        """Epochs until a stop if the monitor does not improve again (None: never stops early)."""
        return None if self.patience is None else max(0, self.patience - self.bad_epochs)

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)
