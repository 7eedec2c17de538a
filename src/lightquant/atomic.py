"""The one atomic file write: every output (checkpoints, exports, metrics, caches, leaderboards,
reports) is written to a temporary file beside its target and renamed over it, so a reader never
sees half a file and a killed run never leaves one.

The temporary file is opened with plain ``open``, so the output gets the user's umask (a
colleague on a shared server can read it; ``mkstemp`` would make it 0600). Its name carries the
writer's pid, ``.<name>.<pid>.<random>.tmp``: the next write of the same target removes the
leftovers of writers that no longer run (a ``kill -9`` mid-write), and never those of a live one.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: Path) -> int:
    """Delete temporaries of ``path`` left by writers that died; returns how many."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[0-9a-f]+\.tmp$")
    removed = 0
    for f in path.parent.glob(f".{path.name}.*.tmp"):
        m = pattern.match(f.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            f.unlink(missing_ok=True)
            removed += 1
    return removed


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], binary: bool = True) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text), binary=False)
