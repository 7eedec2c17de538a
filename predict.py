"""Tomorrow's ranked signals: ``python predict.py ckpt=<run dir | .pth> [date=YYYY-MM-DD]``.

A thin Hydra entry; the work happens in ``lightquant.evaluation.signals.predict_signals``.
"""

import hydra
from omegaconf import DictConfig

from lightquant.config_check import validate_tool_config
from lightquant.entry import one_line_errors, tool_options


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    with one_line_errors():  # a bad ckpt, date or dataset: one line, exit 2
        validate_tool_config(cfg)  # before torch is imported: a typo fails in seconds
        from lightquant.evaluation.signals import predict_signals

        predict_signals(cfg.ckpt, cfg.date, cfg.output_dir, **tool_options(cfg))


if __name__ == "__main__":
    main()
