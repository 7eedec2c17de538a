"""Experiment tracking with SwanLab: config, per-epoch metrics, final metrics, run dir.

A tracker is a Trainer callback (``on_epoch_end``) with ``log_summary`` for the final
metrics and ``finish``. It is also a context manager that finishes the run on the way
out, failed or not: the trials of a sweep share one process, and a trial that raised
must not leave its run open under the next one.

The API key is never passed here: in cloud mode SwanLab reads ``SWANLAB_API_KEY`` from
the environment itself, and this module only checks that it is set.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightquant.choices import SWANLAB_MODES
from lightquant.errors import ConfigError, LaunchError

log = logging.getLogger(__name__)

API_KEY_ENV = "SWANLAB_API_KEY"
#: tracker.mode -> SwanLab's own mode name ("online" accepted too: SwanLab's name, e.g. from SWANLAB_MODE)


class Tracker:
    """The do-nothing tracker (disabled mode, ranks other than 0); the interface of the others."""

    def on_epoch_end(self, trainer: object, row: Mapping[str, Any]) -> None:
        self.log(row, step=int(row["epoch"]))

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        pass

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """The run's final metrics (``metrics.json``'s content)."""

    def finish(self, error: BaseException | None = None) -> None:
        pass

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        try:
            self.finish(exc)
        except Exception:
            if exc is None:
                raise
            # the run's own error is the one to see: a failing finish must not replace it
            log.exception("Could not close the tracker run after %s", type(exc).__name__)
        return False  # never swallow the run's error


def numeric_items(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of ``values`` (nested dicts flattened to ``a/b``); trackers chart only numbers."""
    out: dict[str, float] = {}
    for key, v in values.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping):
            out.update(numeric_items(v, f"{name}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = float(v)
    return out


def check_mode(mode: str) -> str:
    """SwanLab's name for ``mode``; a clear error for an unknown mode or cloud without a key."""
    if mode not in SWANLAB_MODES:
        raise ConfigError(f"tracker.mode={mode!r}: choose one of local, offline, cloud, disabled")
    swan_mode = SWANLAB_MODES[mode]
    if swan_mode == "online" and not os.environ.get(API_KEY_ENV):
        raise LaunchError(
            f"tracker.mode={mode} uploads to SwanLab and needs your API key in the environment: "
            f"`export {API_KEY_ENV}=<key>` (SwanLab web -> Settings -> API Key), never in a config file; "
            "or track without network: tracker.mode=offline (the default) / local"
        )
    if swan_mode == "local" and importlib.util.find_spec("swanboard") is None:
        # Local runs are only useful with the dashboard, an optional extra (its rich<14 pin
        # clashes with other tools): keep the files as an offline run instead of failing.
        _warn_no_dashboard()
        swan_mode = "offline"
    return swan_mode


@functools.cache  # once per process, not once per sweep trial
def _warn_no_dashboard() -> None:
    # info, not a warning: the run is tracked all the same; the "Tracking:" line says where
    log.info("tracker.mode=local without the SwanLab dashboard extra (`make dashboard` installs it): "
             "offline runs instead")


class SwanLabTracker(Tracker):
    """One SwanLab run; metrics are logged with the epoch as step."""

    def __init__(
        self,
        *,
        mode: str,
        project: str,
        experiment_name: str,
        log_dir: str | Path,
        config: Mapping[str, Any],
        workspace: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        description: str | None = None,
        probes: bool = True,
    ) -> None:
        import swanlab  # here, not at module level: ~1 s of imports a disabled run does not pay

        self._swanlab = swanlab
        self.mode = check_mode(mode)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # interactive=False: never prompt (no TTY under a sweep or CI); the probes (hardware
        # monitor, git, pip freeze) cost ~0.4 s per run, worth it except in quick trials.
        settings = swanlab.Settings(
            interactive=False,
            probe={"monitor": probes, "hardware": probes, "requirements": probes, "git": probes},
        )
        with _quiet():  # SwanLab's banner and sync hints: one line of ours below instead
            self.run = swanlab.init(
                mode=self.mode,
                project=project,
                workspace=workspace,
                name=experiment_name,
                group=group,
                tags=list(tags),
                description=description or None,  # SwanLab rejects ""
                config=dict(config),
                log_dir=str(self.log_dir),
                settings=settings,
                reinit=True,  # finish a run some earlier code left open rather than fail
            )
        self._last_step = 0
        log.info("Tracking: %s", self.where())

    def log(self, values: Mapping[str, Any], step: int | None = None) -> None:
        nums = numeric_items(values)
        if step is not None:
            self._last_step = step
            nums.pop("epoch", None)  # the step already is the epoch
        if nums:
            self._swanlab.log(nums, step=step)

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        # "val" in metrics.json is the best epoch's, already charted per epoch as val/*: log it
        # as best_val/* so the curves keep one point per epoch.
        sections = {("best_val" if k == "val" else k): v for k, v in metrics.items() if isinstance(v, Mapping)}
        self.log(sections, step=self._last_step + 1)
        # Top-level scalars (best_epoch, epochs_trained) describe the run: config, not charts; never
        # overwrite a config key ("model", "dataset" are config groups there).
        config = self._swanlab.config
        self._swanlab.config.update({k: v for k, v in metrics.items()
                                     if isinstance(v, (str, int, float)) and k not in config})

    def where(self) -> str:
        """Where this run's data goes and how to look at it, in one line."""
        run_dir = getattr(self.run, "dir", None) or self.log_dir
        if self.mode == "online":
            return f"SwanLab cloud run {getattr(self.run, 'url', '') or run_dir}"
        view = ("`make dashboard` to browse" if self.mode == "local"
                else f"`swanlab sync {run_dir}` to upload, tracker.mode=local for `make dashboard`")
        return f"SwanLab {self.mode} run in {run_dir} ({view}; tracker=disabled for none)"

    def finish(self, error: BaseException | None = None) -> None:
        with _quiet():
            if error is None:
                self._swanlab.finish()
            elif isinstance(error, KeyboardInterrupt):
                self._swanlab.finish(state="aborted")
            else:
                self._swanlab.finish(state="crashed", error=f"{type(error).__name__}: {error}")


@contextmanager
def _quiet() -> Iterator[None]:
    """SwanLab's console output (a banner, the run folder, a sync hint at start and again at the
    end) kept out of the console: into the run's log at debug level."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        if buf.getvalue().strip():
            log.debug("swanlab: %s", buf.getvalue().strip())


def start_tracker(
    *,
    mode: str,
    project: str,
    experiment_name: str,
    log_dir: str | Path,
    config: Mapping[str, Any],
    workspace: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    description: str | None = None,
    probes: bool = True,
    rank: int = 0,
) -> Tracker:
    """A SwanLab run on rank 0, a do-nothing tracker on other ranks and in disabled mode."""
    if mode not in SWANLAB_MODES:
        check_mode(mode)  # raises the "choose one of" error on every rank
    if rank != 0 or SWANLAB_MODES[mode] == "disabled":
        return Tracker()
    return SwanLabTracker(
        mode=mode, project=project, experiment_name=experiment_name, log_dir=log_dir, config=config,
        workspace=workspace, group=group, tags=tags, description=description, probes=probes,
    )
