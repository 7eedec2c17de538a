"""One run per run dir: a second process pointed at a dir in use fails at once, before it can
mix its config, checkpoints or metrics with the first run's.

The lock is an ``flock`` on ``<run dir>/.lock`` held for the whole run; the kernel releases it
when the process ends, however it ends, so a killed run never leaves a stale lock (``trainer.resume``
or ``hydra.run.dir=<old dir>`` into it works right away).

Before the run starts, :class:`WritableOutputDir` (a Hydra callback) checks the folder can be written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lightquant.entry import one_line_errors
from lightquant.errors import ConfigError

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path) -> Iterator[None]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(run_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ConfigError(f"run dir {run_dir} is in use by another run (pid {holder}); two runs there would mix "
                              "their outputs: give this one another hydra.run.dir") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class WritableOutputDir(Callback):
    """Hydra callback (conf/hydra/default.yaml, evaluate.yaml, predict.yaml): before Hydra writes
    ``.hydra/`` and opens its log file, check that the run (or sweep) dir can be written, so a
    read-only folder is one line naming it, not Hydra's traceback ("Unable to configure handler")."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the run dir names the model through ${hydra:runtime.choices.model}, which resolves only once
        # HydraConfig is set; Hydra sets it later (in run_job), with this same config
        HydraConfig.instance().set_config(config)
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")

    @staticmethod
    def _check(folder: str, key: str) -> None:
        path = Path(str(folder))
        with one_line_errors():  # Hydra has not called the task yet: the entry's own handler is not around it
            try:
                path.mkdir(parents=True, exist_ok=True)
                probe = path / f".write-test.{os.getpid()}"
                probe.touch()
                probe.unlink()
            except OSError as e:
                raise ConfigError(f"cannot write the output folder {path} ({e.strerror}): give another with "
                                  f"{key}=<folder>, or make it writable") from e
