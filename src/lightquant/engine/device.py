"""Device choice, data placement, and the environment / GPU status lines."""

from __future__ import annotations

import logging
import os
from dataclasses import fields, replace

import torch
import torch.distributed as dist

from lightquant.batch import Batch
from lightquant.data.market import MarketData
from lightquant.errors import ConfigError, LaunchError

log = logging.getLogger(__name__)

#: the dataset moves to the GPU when it takes at most this share of the free memory
#: (the rest is for the model, activations and the optimizer)
DATA_MEMORY_SHARE = 0.5


def resolve_device(device: str = "auto", gpu_id: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run.
    Under torchrun (trainer=ddp) each process takes the GPU of its LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise LaunchError("trainer.device=cuda but CUDA is not available; use trainer.device=auto or cpu")
        if dist.is_available() and dist.is_initialized():
            gpu_id = int(os.environ.get("LOCAL_RANK", "0"))
        if not 0 <= gpu_id < torch.cuda.device_count():
            raise ConfigError(f"trainer.gpu_id={gpu_id} but only {torch.cuda.device_count()} GPU(s) are visible")
        return torch.device("cuda", gpu_id)
    if device == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"trainer.device={device!r}; use auto, cpu or cuda")


def describe_environment(device: torch.device) -> str:
    parts = [f"torch {torch.__version__}", f"CUDA available: {torch.cuda.is_available()}", f"device: {device}"]
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    if dist.is_available() and dist.is_initialized():
        parts.append(f"rank {dist.get_rank()}/{dist.get_world_size()} ({dist.get_backend()})")
    return ", ".join(parts)


def data_nbytes(data: MarketData) -> int:
    tensors = [v for v in vars(data).values() if isinstance(v, torch.Tensor)]
    tensors += [t for s in data.splits.values() for t in vars(s).values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


def place_data(data: MarketData, device: torch.device) -> MarketData:
    """Move the whole dataset to ``device`` when it fits, so a batch is a gather on the GPU with
    no host copy; otherwise keep it in host memory and let the Trainer copy each batch."""
    if device.type != "cuda":
        return data.to(device)
    size = data_nbytes(data)
    free, _ = torch.cuda.mem_get_info(device)
    if size <= DATA_MEMORY_SHARE * free:
        log.info("Data on %s (%.2f GiB of %.1f GiB free)", device, size / 2**30, free / 2**30)
        return data.to(device)
    log.warning(
        "Data (%.2f GiB) exceeds %.0f%% of the free GPU memory (%.1f GiB): kept in host memory, "
        "batches are copied to the GPU step by step", size / 2**30, 100 * DATA_MEMORY_SHARE, free / 2**30,
    )
    return data


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device``; a no-op when the data already lives there."""
    if batch.x.device == device:
        return batch
    # A gathered batch is fresh pageable memory: pinning it lets the copy run asynchronously
    # (non_blocking) while the GPU is still busy with the previous step.
    pin = device.type == "cuda"
    moved = {}
    for f in fields(batch):
        v = getattr(batch, f.name)
        moved[f.name] = None if v is None else (v.pin_memory() if pin else v).to(device, non_blocking=pin)
    return replace(batch, **moved)


def gpu_stats(device: torch.device) -> dict[str, float]:
    """GPU memory (MiB, allocated now / peak) and, where NVML can read them, utilisation (%) and
    temperature (C): logged in each epoch's history row, so a tracker plots them. Empty on CPU."""
    if device.type != "cuda":
        return {}
    stats = {
        "gpu/mem_alloc_mib": torch.cuda.memory_allocated(device) / 2**20,
        "gpu/mem_peak_mib": torch.cuda.max_memory_allocated(device) / 2**20,
    }
    for key, read in (("gpu/util_pct", torch.cuda.utilization), ("gpu/temp_c", torch.cuda.temperature)):
        try:
            stats[key] = float(read(device))
        except Exception:  # noqa: BLE001, S110  (NVML missing or unreadable: a nicety, never an error)
            pass
    return stats


def gpu_status(device: torch.device, stats: dict[str, float] | None = None) -> str:
    """The GPU part of the epoch line; empty on CPU."""
    s = gpu_stats(device) if stats is None else stats
    if not s:
        return ""
    out = f"gpu mem {s['gpu/mem_alloc_mib']:.0f}/{s['gpu/mem_peak_mib']:.0f} MiB (alloc/peak)"
    if "gpu/util_pct" in s:
        out += f" util {s['gpu/util_pct']:.0f}%"
    if "gpu/temp_c" in s:
        out += f" {s['gpu/temp_c']:.0f}C"
    return out
