"""Evaluate an exported model: ``python evaluate.py ckpt=result/synthetic/model_saved/lstm.pth split=val``.

A thin Hydra entry; the work happens in ``lightquant.evaluation.evaluate.evaluate_export``.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from lightquant.config_check import validate_tool_config
from lightquant.entry import one_line_errors, tool_options


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():  # a bad ckpt, split or dataset: one line, exit 2
        validate_tool_config(cfg)  # before torch is imported: a typo fails in seconds
        from lightquant.evaluation.evaluate import evaluate_export

        evaluate_export(cfg.ckpt, cfg.split, cfg.output_dir, backtest=OmegaConf.to_container(cfg.backtest, resolve=True),
                        **tool_options(cfg))


if __name__ == "__main__":
    main()
