"""Data parallel over processes started by torchrun (``trainer=ddp``).

torchrun starts one process per GPU (or per CPU worker) and sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE`` and ``TORCHELASTIC_RUN_ID`` in each; everything here reads those, so a plain
``python train.py`` never touches ``torch.distributed``. The Trainer wraps the model in DDP
when a process group exists; models stay single-device ``nn.Module``s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from lightquant.errors import LaunchError
from lightquant.launch import env_rank, launched_by_torchrun

LAUNCH = "torchrun --standalone --nproc_per_node=N train.py trainer=ddp [overrides]"


def is_main_process() -> bool:
    """Rank 0, or a single process: the one that logs, writes checkpoints, metrics and exports."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return env_rank() == 0


@contextmanager
def process_group(enabled: bool, device: str = "auto", multirun: bool = False) -> Iterator[None]:
    """Join torchrun's process group for the duration of a run (``enabled``: ``trainer=ddp``)
    and always leave it, even when training fails. Backend: nccl on CUDA, gloo on CPU."""
    launched = launched_by_torchrun()
    if launched and multirun:
        raise LaunchError(
            "torchrun with --multirun: every rank would run its own sweep and sample different "
            "hyper-parameters. Run sweeps without torchrun (one process per trial), or one torchrun "
            "launch per setting."
        )
    if enabled and not launched:
        raise LaunchError(f"trainer=ddp needs torchrun to start its processes: {LAUNCH} (one process: drop trainer=ddp)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if launched and not enabled and world > 1:
        raise LaunchError(
            f"started by torchrun with WORLD_SIZE={world} but without trainer=ddp: every process would "
            f"train its own copy of the model. Add trainer=ddp: {LAUNCH}"
        )
    if not enabled:
        yield
        return
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:  # one GPU per process, before NCCL initialises on the wrong one
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")  # address, rank, world size: env:// from torchrun
    try:
        if dist.get_rank() != 0:
            _quiet_console()
        yield
    finally:
        dist.destroy_process_group()


def _quiet_console() -> None:
    """Ranks > 0 keep their own log file (train.rank<r>.log) but leave the console to rank 0."""
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # not FileHandler, a subclass
            handler.setLevel(logging.WARNING)
