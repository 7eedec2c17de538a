"""Tomorrow's signals: every stock scored on one day (by default the data's last) by an exported model.

The data is built as known at that day's close (:meth:`lightquant.data.panel.Panel.until`): no
price or text dated later exists while it is scored, so a signal cannot look ahead, and the
scored day needs no label, so the final day of the data, whose next move nobody knows yet,
is scored too. Inputs are normalised, and texts embedded, with the statistics and the
encoder state saved in the export (see :mod:`lightquant.evaluation.evaluate`).

A day's signal equals the prediction evaluation gave that stock-day, with two exceptions a
user may meet: cross-sectional models (DTML) see the stocks that trade that day, labelled or
not, where evaluation saw the labelled ones only (ACL18 drops small moves from its labels);
and ``dataset.on_jump=adjust`` rescales earlier prices from later jumps, which later data
can change.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lightquant.atomic import atomic_write_text
from lightquant.config_check import parse_day
from lightquant.data.market import SCORE_SPLIT
from lightquant.engine import resolve_device
from lightquant.errors import ConfigError
from lightquant.evaluation.evaluate import model_and_config, model_data
from lightquant.evaluation.predictions import predict_frame

log = logging.getLogger(__name__)

_OUTCOME = ("target_date", "pred_up", "label", "return", "day_return")  # unknown on the scored day, or not a signal


def rank_signals(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank 1 = highest ``prob_up``; ties go to the stock name, so a file is reproducible."""
    out = frame.sort_values(["prob_up", "stock"], ascending=[False, True], kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    first = ["stock", "date", "prob_up", "rank"]
    return out[first + [c for c in out.columns if c not in first]]


def predict_signals(
    ckpt: str | Path,
    date: Any = None,
    output_dir: str | Path = "outputs/predict",
    *,
    dataset: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    gpu_id: int = 0,
    batch_size: int = 1024,
    top_news: int = 3,
) -> dict[str, Any]:
    """Score every stock on ``date`` (default: the data's last day) and write ``signals_<date>.csv``
    (stock, date, prob_up, rank, ``prob_up_t+h`` for multi-horizon models, and ``news_i`` /
    ``news_date_i`` / ``news_weight_i`` for models that explain) to ``output_dir``.

    Returns ``{"model", "dataset", "date", "n", "path", "unscored", "ckpt"}``."""
    day = parse_day(date)
    model, payload, cfg = model_and_config(ckpt, dataset, cache_dir)
    val_end = cfg.dataset.splits.get("val_end")
    if day is not None and val_end and day <= np.datetime64(str(val_end), "D"):
        raise ConfigError(f"date={day} lies in the training or validation period (dataset.splits.val_end={val_end}), "
                          "on which the model was fitted or selected; predict.py scores later days, and "
                          "`evaluate.py split=val` scores that period")
    data = model_data(payload, cfg, score_day="latest" if day is None else day)
    scored = np.datetime64(data.bounds[SCORE_SPLIT][0], "D")

    dev = resolve_device(device, gpu_id)
    model, data = model.to(dev), data.to(dev)
    frame = predict_frame(model, data, SCORE_SPLIT, batch_size=batch_size, top_news=top_news)
    signals = rank_signals(frame.drop(columns=list(_OUTCOME)))
    unscored = sorted(set(data.stocks) - set(signals["stock"]))  # no price that day or too short a history

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"signals_{scored}.csv"
    atomic_write_text(path, signals.to_csv(index=False))
    model_name = payload["train_config"].get("model_name", "model")
    if unscored:
        log.warning("%d stock(s) not scored on %s (no price that day, or fewer than look_back_window=%d trading "
                    "days of history): %s", len(unscored), scored, data.look_back_window, unscored[:10])
    head = ", ".join(f"{s} {p:.3f}" for s, p in zip(signals["stock"][:5], signals["prob_up"][:5]))
    log.info("%s on %s: %d stocks scored for the session after %s; top: %s -> %s", model_name, cfg.dataset.name,
             len(signals), scored, head, path)
    return {"model": model_name, "dataset": cfg.dataset.name, "date": str(scored), "n": len(signals),
            "path": str(path), "unscored": unscored, "ckpt": str(ckpt)}
