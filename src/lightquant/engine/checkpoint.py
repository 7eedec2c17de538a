"""Atomic checkpoint files, and finding the one to resume from."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text via a temp file + rename, so a reader (a sweep report, the leaderboard) never
    sees half a metrics.json and a killed run never leaves one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file, else ``last.pt`` in it or in its ``checkpoints/``."""
    p = Path(path)
    for candidate in (p, p / "last.pt", p / "checkpoints" / "last.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"trainer.resume={path}: no checkpoint there; give a .pt file or a run dir holding checkpoints/last.pt"
    )


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The trained weights of another run, for ``trainer.init_from`` (weights only: no optimizer,
    epoch or RNG state, unlike ``trainer.resume``).

    ``path`` is a run dir (its ``checkpoints/best.pt``), a checkpoint (``best.pt``, or ``last.pt``
    whose best-epoch weights are taken: what that run ended with and exported) or an exported
    ``.pth``. Returns the state dict and the file it came from.
    """
    p = Path(path)
    for candidate in (p, p / "best.pt", p / "checkpoints" / "best.pt"):
        if candidate.is_file():
            state = torch.load(candidate, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                break
            for key in ("best_model", "model", "state_dict"):  # last.pt, best.pt, an export
                if isinstance(state.get(key), dict):
                    return state[key], candidate
            raise ValueError(f"trainer.init_from={path}: {candidate} holds no model weights "
                             "(expected a LightQuant checkpoint or export)")
    raise FileNotFoundError(
        f"trainer.init_from={path}: no weights there; give a run dir (with checkpoints/best.pt), a .pt "
        "checkpoint or an exported .pth"
    )


def init_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Load another run's weights into ``model``, refusing (before any training) when the
    architectures differ, with the differing keys named."""
    state, source = load_weights(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                    if k in state and state[k].shape != v.shape)
    if missing or unexpected or shapes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"other shapes (saved vs this model) {shapes}" if shapes else ""]
        raise ValueError(f"trainer.init_from={path}: the weights in {source} do not fit this model: "
                         + "; ".join(p for p in parts if p)
                         + ". Use the same model sizes as the run they came from")
    model.load_state_dict(state)
    return source
