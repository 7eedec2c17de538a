"""Evaluate an exported model (``result/<dataset>/model_saved/<model>.pth``) on any split.

The ``.pth`` carries its full training config, so the dataset it was trained on is rebuilt
from the file alone (same source, features, window, splits, label rule; the data cache makes
this cheap). Another compatible dataset may be given instead: its features and window must
match the model's. Either way the inputs are normalised with the statistics the model was
trained with and texts are embedded by the encoder it was trained with (both stored in the
file), never refitted on the data at hand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from lightquant.builder import build_data
from lightquant.data.market import SPLITS, MarketData
from lightquant.engine import predict_logits, resolve_device
from lightquant.errors import CheckpointError, ConfigError
from lightquant.evaluation.finish import backtest_predictions
from lightquant.evaluation.metrics import split_metrics
from lightquant.evaluation.predictions import predict_frame
from lightquant.export import load_model
from lightquant.losses import get_criterion

log = logging.getLogger(__name__)

_COMPLETE = ("name", "source", "features")  # keys only a whole dataset config has


def dataset_config(trained: Mapping[str, Any], override: Mapping[str, Any] | None,
                   spec: Mapping[str, Any] | None = None, paths: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dataset config to evaluate on.

    No override: the one the model was trained on. A complete dataset config (it has
    name, source and features, as ``dataset=csmd300`` composes) replaces it; a partial one
    (``+dataset.root=/data/CSMD50``) is merged onto it. ``spec``: the training dataset config before
    its interpolations were resolved (exports keep it), so that a new ``root`` also moves the
    folders derived from it (``price_dirs: ["${dataset.root}/price"]``); resolved against ``paths``.
    """
    if not override:
        return dict(trained)
    if all(k in override for k in _COMPLETE):
        return dict(override)
    if spec is not None:
        merged = OmegaConf.merge(OmegaConf.create(dict(spec)), OmegaConf.create(dict(override)))
        tree = OmegaConf.create({"paths": dict(paths or {}), "dataset": merged})
        return OmegaConf.to_container(tree, resolve=True)["dataset"]
    return OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(dict(trained)), OmegaConf.create(dict(override))))


def check_compatible(dataset: Mapping[str, Any], data_info: Mapping[str, Any]) -> None:
    """Raise, before any data is read, when ``dataset`` cannot feed the exported model, saying which key to set."""
    want, have = list(data_info.get("feature_names", [])), list(dataset.get("features", []))
    if want and have != want:
        raise ConfigError(f"the model was trained on features {want} but dataset {dataset.get('name')} gives "
                         f"{have}; use dataset.features=[{','.join(want)}]")
    window = data_info.get("look_back_window")
    if window is not None and int(window) != int(dataset.get("look_back_window", window)):
        raise ConfigError(f"the model was trained on look_back_window={window} but dataset {dataset.get('name')} has "
                         f"{dataset.get('look_back_window')}; use dataset.look_back_window={window}")


def model_and_config(ckpt: str | Path, dataset: Mapping[str, Any] | None = None,
                     cache_dir: str | None = None) -> tuple[torch.nn.Module, dict[str, Any], Any]:
    """The exported model, its payload and the config to build its data with (checked against the model).

    ``dataset``: see :func:`dataset_config`."""
    model, payload = load_model(ckpt)
    train_cfg = payload.get("train_config") or {}
    if "dataset" not in train_cfg:
        raise CheckpointError(f"{ckpt} holds no training config (train_config.dataset); re-export it with train.py")
    cfg = OmegaConf.create(train_cfg)
    cfg.dataset = dataset_config(train_cfg["dataset"], dataset, payload.get("dataset_spec"), train_cfg.get("paths"))
    if cache_dir:
        cfg.paths.cache_dir = str(cache_dir)
    check_compatible(cfg.dataset, payload.get("data", {}))
    return model, payload, cfg


def model_data(payload: Mapping[str, Any], cfg: Any, score_day: Any = None) -> MarketData:
    """The data of :func:`model_and_config`'s ``cfg``, normalised and text-encoded as the model was trained;
    ``score_day``: as in :func:`lightquant.builder.build_data`."""

    info = payload.get("data", {})
    if cfg.use_news and not info.get("text_encoder"):  # exported before encoder states were kept
        log.warning("The export holds no text-encoder state: the encoder is refitted on %s's training texts, which "
                    "matches training only when they are the same texts", cfg.dataset.name)
    stats = (info["norm_mean"].numpy(), info["norm_std"].numpy()) if "norm_mean" in info else None
    data = build_data(cfg, norm_stats=stats, text_encoder=info.get("text_encoder"), score_day=score_day)
    news = int(payload["model_config"].get("news_size", 0) or 0)
    if news != data.news_size:
        raise ConfigError(f"the model reads {news}-dim news embeddings but the data gives {data.news_size}; "
                         "the training config's use_news/encoder must be kept")
    return data


def evaluate_export(
    ckpt: str | Path,
    split: str = "test",
    output_dir: str | Path = "outputs/evaluate",
    *,
    dataset: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    gpu_id: int = 0,
    batch_size: int = 1024,
    top_news: int = 3,
    backtest: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``ckpt`` on ``split``; writes ``predictions_<split>.csv``, ``metrics_<split>.json`` and,
    with ``backtest`` enabled, ``backtest_<split>.json`` and ``equity_<split>.png`` to ``output_dir``.

    ``dataset``: see :func:`dataset_config`. ``cache_dir``: the data cache (default: the training run's).
    Returns ``{"model", "dataset", "split", "ckpt", <split>: metrics, "backtest"?: ...}``.
    """
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}; use one of {list(SPLITS)}")
    model, payload, cfg = model_and_config(ckpt, dataset, cache_dir)
    data = model_data(payload, cfg)
    train_cfg = payload["train_config"]
    name, trained_on = cfg.dataset.name, train_cfg["dataset"]["name"]
    dev = resolve_device(device, gpu_id)
    model, data = model.to(dev), data.to(dev)
    # one pass: the run's own metrics (its training loss included) and the predictions from the same logits
    logits, y, mask = predict_logits(model, data, split, batch_size)
    scores = split_metrics(logits, y, mask, data, split, get_criterion(train_cfg["trainer"].get("loss", "bce")),
                           per_horizon=True)
    pred = predict_frame(model, data, split, batch_size=batch_size, top_news=top_news, logits=logits)

    model_name = train_cfg.get("model_name", payload["model_config"]["_target_"].rsplit(".", 1)[-1].lower())
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred.to_csv(out / f"predictions_{split}.csv", index=False)
    result: dict[str, Any] = {"model": model_name, "dataset": name, "trained_on": trained_on, "split": split,
                              "ckpt": str(ckpt), split: scores}
    if len(pred):
        bt = backtest_predictions(pred, out, split, backtest, title=f"{model_name} on {name}, {split} split",
                                  market=cfg.dataset.get("market"), caution=cfg.dataset.get("backtest_caution"))
        if bt is not None:
            result["backtest"] = bt
    (out / f"metrics_{split}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    log.info("%s on %s/%s: accuracy %.4f | MCC %.4f | n %d -> %s", model_name, name, split,
             scores.get("accuracy", float("nan")), scores.get("mcc", float("nan")),
             scores["n"], out)
    return result

