"""Which process may write shared outputs (tracker runs, plots)."""

from __future__ import annotations

import os


def global_rank() -> int:
    """This process's rank as torchrun / DDP launchers set it in ``RANK``; 0 when not distributed."""
    return int(os.environ.get("RANK", "0"))


def is_rank_zero() -> bool:
    return global_rank() == 0
