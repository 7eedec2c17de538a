"""Evaluate an exported model: ``python evaluate.py ckpt=result/synthetic/model_saved/lstm.pth split=val``.

A thin Hydra entry; the work happens in ``lightquant.evaluation.evaluate.evaluate_export``.
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from lightquant.config_check import validate_tool_config
from lightquant.entry import one_line_errors


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with one_line_errors():  # a bad ckpt, split or dataset: one line, exit 2
        validate_tool_config(cfg)  # before torch is imported: a typo fails in seconds
        from lightquant.evaluation.evaluate import evaluate_export

        evaluate_export(
            cfg.ckpt,
            cfg.split,
            cfg.output_dir,
            dataset=OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") else None,
            cache_dir=cfg.paths.cache_dir,
            device=cfg.device,
            gpu_id=int(cfg.gpu_id),
            batch_size=int(cfg.batch_size),
            top_news=int(cfg.top_news),
            backtest=OmegaConf.to_container(cfg.backtest, resolve=True),
        )


if __name__ == "__main__":
    main()
