"""Atomic checkpoint files, and finding the one to resume from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lightquant.atomic import atomic_write
from lightquant.errors import CheckpointError, MissingPathError


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through :func:`lightquant.atomic.atomic_write`: a crash never leaves half a file."""
    atomic_write(path, lambda fh: torch.save(obj, fh))


def read_checkpoint(path: str | Path, key: str, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load`` of a LightQuant checkpoint or export (``weights_only``: no pickled code runs),
    with an empty, truncated or foreign file reported as a :class:`CheckpointError` naming the file
    and the config ``key`` that pointed at it."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{key}: {path} is empty (an interrupted write?); use another checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for unreadable files
        raise CheckpointError(f"{key}: {path} is not a readable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'truncated'}); use another file") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{key}: {path} holds a {type(state).__name__}, not a LightQuant checkpoint or export")
    return state


def find_checkpoint(path: str | Path) -> Path:
    """``path`` itself when it is a file, else ``last.pt`` in it or in its ``checkpoints/``."""
    p = Path(path)
    for candidate in (p, p / "last.pt", p / "checkpoints" / "last.pt"):
        if candidate.is_file():
            return candidate
    raise MissingPathError(
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
            state = read_checkpoint(candidate, "trainer.init_from")
            for key in ("best_model", "model", "state_dict"):  # last.pt, best.pt, an export
                if isinstance(state.get(key), dict):
                    return state[key], candidate
            raise CheckpointError(f"trainer.init_from={path}: {candidate} holds no model weights "
                             "(expected a LightQuant checkpoint or export)")
    raise MissingPathError(
        f"trainer.init_from={path}: no weights there; give a run dir (with checkpoints/best.pt), a .pt "
        "checkpoint or an exported .pth"
    )


def init_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Load another run's weights into ``model`` (:func:`load_weights`, then :func:`apply_weights`)."""
    state, source = load_weights(path)
    return apply_weights(model, state, source, path)


def apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, path: str | Path) -> Path:
    """Put loaded weights into ``model``, refusing (before any training) when the architectures
    differ, with the differing keys named."""
    check_fits(model, state, source, f"trainer.init_from={path}")
    model.load_state_dict(state)
    return source


def check_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, key: str) -> None:
    """Raise a :class:`CheckpointError` naming the missing, unexpected and resized keys when ``state``
    (from ``source``) is not the state dict of ``model``'s architecture."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
                    if k in state and state[k].shape != v.shape)
    if missing or unexpected or shapes:
        parts = [f"missing {missing}" if missing else "", f"unexpected {unexpected}" if unexpected else "",
                 f"other shapes (saved vs this model) {shapes}" if shapes else ""]
        raise CheckpointError(f"{key}: the weights in {source} do not fit this model: "
                              + "; ".join(p for p in parts if p)
                              + ". Use the same model and sizes as the run they came from")
