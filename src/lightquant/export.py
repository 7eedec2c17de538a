"""Exported models: one ``.pth`` file that rebuilds a ready model without the run dir.

The file holds the weights, the model's ``_target_`` config (enough to rebuild it),
the full training config, the data facts a user needs to feed it (feature names,
normalisation statistics, window length) and the final metrics. It loads with
``torch.load(weights_only=True)``, so opening a file runs no pickled code, and only
classes under ``lightquant.models.`` may be named as its target.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch

from lightquant.atomic import atomic_write
from lightquant.engine.checkpoint import atomic_save, read_checkpoint
from lightquant.errors import CheckpointError, MissingPathError

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
ALLOWED_PREFIX = "lightquant.models."


def export_model(
    path: str | Path,
    model: torch.nn.Module,
    model_config: dict[str, Any],
    *,
    train_config: dict[str, Any] | None = None,
    data_info: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None,
    dataset_spec: dict[str, Any] | None = None,
) -> Path:
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": dict(model_config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": train_config or {},
        "data": data_info or {},
        "metrics": metrics or {},
        "selection": selection or {},  # the run's optimized_metric and run dir: what keep_best compares
        "dataset_spec": dataset_spec,  # the dataset config with its interpolations: +dataset.root=... moves its folders
    }
    atomic_save(payload, path)
    return path


def selection_record(metrics: dict[str, Any], metric: str, run_dir: str | Path) -> dict[str, Any]:
    """``{"metric": "val/mcc", "value": ..., "direction": ..., "run_dir": ...}`` for :func:`keep_best`."""
    split, _, key = metric.partition("/")
    value = metrics.get(split, {}).get(key)
    return {"metric": metric, "value": float(value) if isinstance(value, (int, float)) else None,
            "direction": "minimize" if key.endswith("loss") else "maximize", "run_dir": str(run_dir)}


def keep_best(run_export: str | Path, best_path: str | Path) -> bool:
    """Copy ``run_export`` to ``best_path`` (``result/<dataset>/model_saved/<model>.pth``) when it beats
    the export there by the optimised metric both recorded, or when there is none (or it was chosen by
    another metric). Every run keeps its own ``model.pth``, so nothing is lost; this file is the best
    so far, with the run it came from in its ``selection``. Returns whether it was replaced."""
    run_export, best_path = Path(run_export), Path(best_path)
    mine = read_checkpoint(run_export, "export").get("selection") or {}
    value = mine.get("value")
    if value is None or value != value:  # NaN: never the best
        return False
    if best_path.is_file():
        try:
            theirs = read_checkpoint(best_path, "export").get("selection") or {}
        except CheckpointError:
            theirs = {}  # unreadable: replaced
        if theirs.get("metric") == mine["metric"] and theirs.get("value") is not None:
            better = value < theirs["value"] if mine["direction"] == "minimize" else value > theirs["value"]
            if not better:
                log.info("Kept %s (%s %.4f from %s; this run: %.4f)", best_path, mine["metric"], theirs["value"],
                         theirs.get("run_dir"), value)
                return False
    data = run_export.read_bytes()
    atomic_write(best_path, lambda fh: fh.write(data))
    log.info("Best export so far by %s (%.4f): %s -> %s", mine["metric"], value, run_export, best_path)
    return True


def resolve_export(path: str | Path) -> Path:
    """What ``ckpt=`` may name: an export (.pth), a run dir (its ``model.pth``), or a run's
    ``checkpoints/best.pt`` / ``last.pt`` (that run's ``model.pth``, the best epoch's weights with
    the data facts a checkpoint lacks)."""
    p = Path(path)
    if p.is_dir():
        candidate = p / "model.pth"
    elif p.suffix == ".pt" and p.parent.name == "checkpoints":
        candidate = p.parent.parent / "model.pth"
    else:
        return p
    if not candidate.is_file():
        raise MissingPathError(f"ckpt={path}: no model.pth in its run dir {candidate.parent}; the run exported "
                               "nothing (export=false, or it did not finish)")
    return candidate


def model_from_config(model_config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate ``{"_target_": "lightquant.models.x.Cls", **kwargs}`` (targets outside the zoo refused)."""
    cfg = dict(model_config)
    target = cfg.pop("_target_", None)
    if not isinstance(target, str) or not target.startswith(ALLOWED_PREFIX):
        raise CheckpointError(f"model _target_ {target!r} is not a LightQuant model (must start with {ALLOWED_PREFIX!r})")
    module_name, _, cls_name = target.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**cfg)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the exported model (in eval mode) and return it with the file's payload."""
    path = resolve_export(path)
    if not path.is_file():
        raise MissingPathError(f"No exported model at {path}")
    payload = read_checkpoint(path, "ckpt", map_location)
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: export format {payload.get('format_version')} is not {FORMAT_VERSION}")
    model = model_from_config(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload
