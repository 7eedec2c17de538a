"""The training engine: one loop for every model."""

from lightquant.engine.device import describe_environment, resolve_device
from lightquant.engine.early_stopping import EarlyStopping
from lightquant.engine.seed import seed_everything
from lightquant.engine.trainer import Trainer

__all__ = ["EarlyStopping", "Trainer", "describe_environment", "resolve_device", "seed_everything"]
