"""The training engine: one loop for every model."""

from lightquant.engine.device import describe_environment, place_data, resolve_device
from lightquant.engine.distributed import is_main_process, process_group
from lightquant.engine.early_stopping import EarlyStopping
from lightquant.engine.seed import seed_everything
from lightquant.engine.trainer import Trainer, predict_logits

__all__ = [
    "EarlyStopping", "Trainer", "describe_environment", "is_main_process", "place_data", "predict_logits", "process_group",
    "resolve_device", "seed_everything",
]
