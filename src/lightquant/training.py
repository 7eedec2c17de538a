"""``train(cfg)``: the one place where the Hydra config meets the package.

Below this module everything takes plain typed arguments, so the package works from
a notebook without Hydra: ``load_market_data(...)``, ``LSTM(...)``, ``Trainer(...)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lightquant.atomic import atomic_write_text
from lightquant.builder import build_data, build_model
from lightquant.config_check import validate_config
from lightquant.engine import (
    Trainer,
    describe_environment,
    is_main_process,
    place_data,
    resolve_device,
    seed_everything,
)
from lightquant.engine.checkpoint import apply_weights, load_weights
from lightquant.engine.profiling import TorchProfiler
from lightquant.engine.threads import cpu_threads
from lightquant.evaluation.finish import finish_run
from lightquant.evaluation.metrics import split_metrics
from lightquant.evaluation.predictions import predict_frame
from lightquant.export import export_model, keep_best, selection_record
from lightquant.launch import register_resolvers
from lightquant.rundir import lock_run_dir
from lightquant.settings import trainer_config
from lightquant.sweeps.runs import EXPLODED_LOSS
from lightquant.tracking import CurvesPlot

log = logging.getLogger(__name__)

register_resolvers()  # the same resolvers the entry points register (a notebook composes configs too)


def train(cfg: DictConfig, callbacks: Sequence[object] = ()) -> dict[str, Any]:
    """Train ``cfg.model`` on ``cfg.dataset``; returns ``{"val": {...}, "test": {...}, ...}``.

    ``callbacks`` (e.g. a tracker) join the Trainer's; ``curves.png`` is always drawn.
    """
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    validate_config(cfg)  # before any work: a bad value fails in a second, not after loading
    is_main = is_main_process()  # under DDP only rank 0 writes files (and holds the run dir's lock)
    with lock_run_dir(out_dir) if is_main else contextlib.nullcontext():
        return _train(cfg, callbacks, out_dir, is_main)


def train_tracked(cfg: DictConfig, callbacks: Sequence[object] = ()) -> dict[str, Any]:
    """:func:`train` with the run's tracker (conf/tracker), finished whatever happens, as
    ``train.py`` and ``lightquant.train`` run it."""
    from lightquant.tracking.from_config import tracker_from_config

    with tracker_from_config(cfg) as tracker:
        metrics = train(cfg, callbacks=[tracker, *callbacks])
        tracker.log_summary(metrics)
    return metrics


def _train(cfg: DictConfig, callbacks: Sequence[object], out_dir: Path, is_main: bool) -> dict[str, Any]:
    t = trainer_config(cfg)  # typed and checked (validate_config checked it already)
    threads = cpu_threads(t.num_threads)  # measures other processes' load over the set-up below
    # another run's weights are read now: a wrong path fails before the data is loaded
    init = (*load_weights(t.init_from), t.init_from) if t.init_from else None
    seed_everything(cfg.seed, deterministic=t.deterministic)
    device = resolve_device(t.device, t.gpu_id)
    log.info("Environment: %s", describe_environment(device))

    # the export's dataset spec, interpolations kept: evaluate.py may move it with another dataset.root
    dataset_spec = OmegaConf.to_container(cfg.dataset, resolve=False)
    data = build_data(cfg)
    log.info("Data %s: %s", cfg.dataset.name, data.summary())

    seed_everything(cfg.seed, deterministic=t.deterministic)  # model init independent of data loading
    model = build_model(cfg, data)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("Model %s (%s): %d parameters", cfg.model_name, cfg.model._target_, n_params)
    if init is not None:
        log.info("Initial weights from %s (weights only; optimizer and schedule start afresh)",
                 apply_weights(model, *init))
    optimizer = instantiate(t.optimizer)(params=model.parameters())
    scheduler = instantiate(t.scheduler)(optimizer=optimizer) if t.scheduler else None

    resolved = OmegaConf.to_container(cfg, resolve=True)
    # written after the model is built: sizes derived from the data (num_stocks) are filled in by then
    if is_main:
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(resolved))
    trainer = Trainer(
        model, optimizer, scheduler, t,
        device=device, batch_size=int(cfg.dataset.batch_size), seed=int(cfg.seed), score=split_metrics,
        checkpoint_dir=out_dir / "checkpoints",
        checkpoint_extra={"config": resolved},
        callbacks=[*callbacks, CurvesPlot(out_dir, title=f"{cfg.model_name} on {cfg.dataset.name}"),
                   *([TorchProfiler(t.profile_steps, out_dir)] if t.profile_steps else [])],
    )
    if t.resume:
        trainer.resume(t.resume)  # epoch, optimizer, scheduler, early stopping, best weights, RNG, history
    data = place_data(data, device)  # on the GPU when it fits
    if threads is not None and device.type == "cpu":
        threads.start()
        trainer.callbacks.append(threads)
    trainer.fit(data)

    es = trainer.early_stopping
    outputs = {split: trainer.predict(data, split) for split in ("val", "test")}  # one pass over each split
    metrics = {
        "model": cfg.model_name,
        "dataset": cfg.dataset.name,
        "seed": int(cfg.seed),
        "best_epoch": es.best_epoch,
        "epochs_trained": trainer.epoch,
        "monitor": es.monitor,
        **{split: split_metrics(*out, data, split, trainer.criterion, per_horizon=True) for split, out in outputs.items()},
    }
    if not is_main:  # DDP: every rank evaluated the full splits; rank 0 alone writes and exports
        return metrics
    predictions = predict_frame(model, data, "test", batch_size=t.eval_batch_size, logits=outputs["test"][0])
    if cfg.save_predictions:
        atomic_write_text(out_dir / "predictions_test.csv", predictions.to_csv(index=False))
    finish_run(cfg, metrics, predictions, out_dir)  # backtest into metrics["backtest"], leaderboard row
    atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    tm = metrics["test"]
    log.info("Test: accuracy %.4f | MCC %.4f | F1 %.4f | n %d", tm["accuracy"], tm["mcc"], tm["f1"], tm["n"])

    if cfg.export:  # the run's own export, never overwritten by another run
        path = export_model(
            out_dir / "model.pth",
            model,
            resolved["model"],
            train_config=resolved,
            data_info={
                "feature_names": data.feature_names,
                "look_back_window": data.look_back_window,
                "norm_mean": data.norm_mean.cpu(),
                "norm_std": data.norm_std.cpu(),
                "text_encoder": data.text_encoder,  # None for price-only models
            },
            metrics={k: metrics[k] for k in ("val", "test")},
            selection=selection_record(metrics, str(cfg.optimized_metric), out_dir),
            dataset_spec=dataset_spec,
        )
        log.info("Exported model to %s", path)
        if cfg.get("keep_best_export", True):
            keep_best(path, Path(cfg.paths.model_save_dir) / f"{cfg.model_name}.pth")
    log.info("Outputs in %s", out_dir)
    return metrics


def optimized_metric(metrics: dict[str, Any], name: str) -> float:
    """``"val/mcc"`` -> ``metrics["val"]["mcc"]``, the scalar the Optuna sweeper optimises.

    A non-finite value raises instead of being returned: the sweeper records the trial as
    failed and goes on, whereas a returned NaN aborts the whole sweep.
    """
    split, _, key = name.partition("/")
    try:
        value = float(metrics[split][key])
    except KeyError as e:
        raise KeyError(f"optimized_metric={name!r} is not in metrics ({split}: {sorted(metrics.get(split, {}))})") from e
    if not math.isfinite(value):
        raise FloatingPointError(f"optimized_metric {name} is {value}")
    loss = metrics.get("val", {}).get("loss", 0.0)
    if not loss <= EXPLODED_LOSS:  # a diverged run must never be the sweep's best
        raise FloatingPointError(f"validation loss {loss:g} exploded (> {EXPLODED_LOSS:g}): the run diverged; "
                                 "lower trainer.lr or keep trainer.gradient_clip_val")
    return value
