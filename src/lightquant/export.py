"""Exported models: one ``.pth`` file that rebuilds a ready model without the run dir.

The file holds the weights, the model's ``_target_`` config (enough to rebuild it),
the full training config, the data facts a user needs to feed it (feature names,
normalisation statistics, window length) and the final metrics. It loads with
``torch.load(weights_only=True)``, so opening a file runs no pickled code, and only
classes under ``lightquant.models.`` may be named as its target.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from lightquant.engine.checkpoint import atomic_save, read_checkpoint
from lightquant.errors import CheckpointError, MissingPathError

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
) -> Path:
    path = Path(path)
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": dict(model_config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "train_config": train_config or {},
        "data": data_info or {},
        "metrics": metrics or {},
    }
    atomic_save(payload, path)
    return path


def build_model(model_config: dict[str, Any]) -> torch.nn.Module:
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
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"No exported model at {path}")
    payload = read_checkpoint(path, "ckpt", map_location)
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: export format {payload.get('format_version')} is not {FORMAT_VERSION}")
    model = build_model(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload
