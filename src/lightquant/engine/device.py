"""Device choice and the environment line printed at start."""

from __future__ import annotations

import torch


def resolve_device(device: str = "auto", gpu_id: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("trainer.device=cuda but CUDA is not available; use trainer.device=auto or cpu")
        if not 0 <= gpu_id < torch.cuda.device_count():
            raise ValueError(f"trainer.gpu_id={gpu_id} but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", gpu_id)
    if device == "cpu":
        return torch.device("cpu")
    raise ValueError(f"trainer.device={device!r}; use auto, cpu or cuda")


def describe_environment(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}", f"CUDA available: {torch.cuda.is_available()}", f"device: {device}"]
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    else:
        parts.append(f"CPU threads: {torch.get_num_threads()}")
    return ", ".join(parts)


def gpu_status(device: torch.device) -> str:
    """GPU memory (and temperature where NVML can read it) for the epoch line; empty on CPU."""
    if device.type != "cuda":
        return ""
    alloc = torch.cuda.memory_allocated(device) / 2**20
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    out = f"gpu mem {alloc:.0f}/{peak:.0f} MiB (alloc/peak)"
    try:
        out += f" {torch.cuda.temperature(device)}C"
    except Exception:  # NVML missing or unreadable: temperature is a nicety, never an error
        pass
    return out
