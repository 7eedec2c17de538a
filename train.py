"""Train a model: ``python train.py model=alstm dataset=csmd50 trainer.epochs=20``.

A thin Hydra entry; the work happens in ``lightquant.training.train``. Only light modules are
imported before the config is checked, so a typo fails in seconds, before torch loads.
"""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lightquant.config_check import validate_config
from lightquant.entry import one_line_errors
from lightquant.errors import UserError
from lightquant.launch import register_resolvers

log = logging.getLogger(__name__)
register_resolvers()  # hydra.run.dir's ${lq.pid} and ${lq.run_name:...} are resolved before main runs


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    # a user error (config, data, checkpoint) prints one line and exits 2; a bug keeps its traceback
    with one_line_errors(multirun):
        validate_config(cfg)
        from lightquant.engine import process_group
        from lightquant.training import optimized_metric, train_tracked

        # trainer=ddp under torchrun: one process group for the run, left even when training fails
        ddp = process_group(cfg.trainer.get("distributed", False), cfg.trainer.device, multirun=multirun)
        try:
            with ddp:
                metrics = train_tracked(cfg)  # finishes the tracker's run even when training fails
                # read by the Optuna sweeper; a non-finite value raises, and the sweeper marks the trial failed
                return optimized_metric(metrics, cfg.optimized_metric)
        except Exception as e:
            if multirun and not isinstance(e, UserError):  # the sweeper logs only the message: keep the traceback
                log.exception("Trial failed")
            raise


if __name__ == "__main__":
    main()
