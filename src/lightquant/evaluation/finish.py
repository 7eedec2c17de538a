"""What a finished run adds after its predictions: the backtest files and a leaderboard row.

``finish_run(cfg, metrics, predictions, out_dir)`` is the one call ``lightquant.training.train``
makes; ``backtest_predictions`` is shared with the evaluate entry. Both read the config only
here, at the edge, and pass plain values down to :mod:`backtest` and :mod:`leaderboard`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from lightquant.evaluation import leaderboard
from lightquant.evaluation.backtest import MarketRules, backtest, index_returns, save_backtest

log = logging.getLogger(__name__)

# Overrides that are leaderboard columns of their own or do not change results: left out
# of the "overrides" column, so the seeds of one configuration share a group key. A name
# ending in "." is a prefix; others match the key exactly ("model" yes, "model.dropout" no).
_NOT_A_SETTING = ("seed", "model", "dataset", "use_news", "paths.", "hydra.", "tracker", "tracker.",
                  "trainer.device", "trainer.gpu_id", "save_predictions", "export", "leaderboard")


def backtest_predictions(pred: pd.DataFrame, out_dir: str | Path, split: str, settings: Mapping[str, Any] | None,
                         title: str = "", market: Mapping[str, Any] | None = None,
                         caution: str | None = None) -> dict[str, Any] | None:
    """Backtest ``pred`` per ``settings`` (conf/backtest: ``enabled``, ``strategy``, ``top_k``, ``cost_bps``,
    ``hold_days``, ``benchmark``) under the dataset's ``market`` rules (price limits, stamp duty); write
    ``backtest_<split>.json`` / ``_daily.csv`` / ``equity_<split>.png`` to ``out_dir``; None when disabled."""
    if not settings or not settings.get("enabled", True):
        return None
    bench = settings.get("benchmark") or "equal_weight"
    result = backtest(pred, strategy=str(settings.get("strategy", "long_only")), top_k=int(settings.get("top_k", 5)),
                      cost_bps=float(settings.get("cost_bps", 10.0)), hold_days=int(settings.get("hold_days", 1)),
                      rules=MarketRules.from_config(market),
                      benchmark=None if bench == "equal_weight" else index_returns(bench))
    if caution:
        result.metrics["caution"] = caution
    paths = save_backtest(result, out_dir, split, title)
    m, b = result.metrics, result.metrics["benchmark"]
    if m["n_days"]:
        def period(x: dict) -> str:  # the total return below a year, the annual one from a year on
            if x["annual_return"] is None:
                return f"total return {100 * x['total_return']:.2f}% over {x['n_days']} days (not annualised)"
            return f"annual return {100 * x['annual_return']:.2f}%"

        st = m["settings"]
        log.info("Backtest %s (%s, k=%d, hold >= %d day(s), %g bps + %g bps stamp duty on sells, limit %s): %s | "
                 "Sharpe %.2f | max drawdown %.2f%% | IR %.2f | benchmark (%s): %s, Sharpe %.2f -> %s",
                 split, st["strategy"], st["top_k"], st["hold_days"], st["cost_bps"], st["stamp_duty_bps"],
                 st["limit_pct"], period(m), m["sharpe"], 100 * m["max_drawdown"], m["information_ratio"],
                 b["name"], period(b), b["sharpe"], paths["equity"])
        if caution:
            log.warning("Backtest: %s", caution)
    return m


def _is_setting(override: str) -> bool:
    key = override.lstrip("+~").split("=", 1)[0]
    return not any(key == p or (p.endswith(".") and key.startswith(p)) for p in _NOT_A_SETTING)


def task_overrides() -> list[str]:
    """The command-line overrides of this Hydra run ([] outside Hydra, e.g. in a notebook)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except (ImportError, ValueError, AttributeError):
        return []


def leaderboard_row(*, model: str, dataset: str, use_news: bool, seed: int, overrides: Sequence[str],
                    metrics: Mapping[str, Any], output_dir: str | Path, commit: str) -> dict[str, Any]:
    """One flat leaderboard row: identity, val/test metrics, backtest figures (``bt_``/``bench_``)."""
    row: dict[str, Any] = {
        "time": datetime.now().isoformat(timespec="seconds"),
        "model": model, "dataset": dataset, "use_news": bool(use_news), "seed": int(seed),
        "overrides": " ".join(sorted(o for o in overrides if _is_setting(o))),
        "best_epoch": metrics.get("best_epoch"), "epochs_trained": metrics.get("epochs_trained"),
    }
    for split in ("val", "test"):
        for k in ("accuracy", "majority_accuracy", "p_vs_majority", "mcc", "f1", "auc", "ic", "rank_ic", "ic_ir",
                  "rank_ic_ir", "loss", "n"):
            row[f"{split}_{k}"] = metrics.get(split, {}).get(k)
    bt = metrics.get("backtest")
    if bt:
        row.update({f"bt_{k}": v for k, v in bt["settings"].items() if k != "periods_per_year"})
        for k in ("total_return", "annual_return", "annual_vol", "sharpe", "max_drawdown", "calmar",
                  "information_ratio", "hit_rate", "turnover", "n_days"):
            row[f"bt_{k}"] = bt.get(k)
        for k in ("total_return", "annual_return", "sharpe", "max_drawdown"):
            row[f"bench_{k}"] = bt["benchmark"].get(k)
    row.update({"git_commit": commit, "output_dir": str(output_dir)})
    return row


def finish_run(cfg: DictConfig, metrics: dict[str, Any], pred: pd.DataFrame, out_dir: str | Path) -> dict[str, Any]:
    """Backtest the test predictions (``cfg.backtest``) into ``metrics["backtest"]`` and append the
    run to ``cfg.leaderboard`` (a CSV path; null to skip). Returns ``metrics``."""
    bt = backtest_predictions(pred, out_dir, "test", cfg.get("backtest"),
                              title=f"{cfg.model_name} on {cfg.dataset.name}, test split",
                              market=cfg.dataset.get("market"), caution=cfg.dataset.get("backtest_caution"))
    if bt is not None:
        metrics["backtest"] = bt
    if cfg.get("leaderboard"):
        row = leaderboard_row(model=cfg.model_name, dataset=cfg.dataset.name, use_news=bool(cfg.use_news),
                              seed=int(cfg.seed), overrides=task_overrides(), metrics=metrics,
                              output_dir=out_dir, commit=leaderboard.git_commit())
        leaderboard.append(cfg.leaderboard, row)
        log.info("Leaderboard row appended to %s", cfg.leaderboard)
    return metrics
