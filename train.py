"""Train a model: ``python train.py model=alstm dataset=csmd50 trainer.epochs=20``.

A thin Hydra entry; the work happens in ``lightquant.run.train``.
"""

import hydra
from omegaconf import DictConfig

from lightquant.run import optimized_metric, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    metrics = train(cfg)
    return optimized_metric(metrics, cfg.optimized_metric)  # read by the Optuna sweeper


if __name__ == "__main__":
    main()
