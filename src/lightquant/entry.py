"""What every entry point (train.py, evaluate.py, python -m ...) does with errors.

A :class:`~lightquant.errors.UserError` (a bad config value, data file, checkpoint or launch)
is printed as one line, ``error: <what, where, fix>``, and the process exits with status 2:
the message is the whole story, and a traceback would only bury it. Every other exception is a
bug and keeps its traceback. ``LIGHTQUANT_DEBUG=1`` shows the traceback of user errors too.
In a sweep (Hydra multirun) the error is logged as one line and re-raised, so the sweeper
records the trial as failed and goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from lightquant.errors import UserError

log = logging.getLogger("lightquant")
EXIT_USER_ERROR = 2


def tool_options(cfg) -> dict:
    """The options ``evaluate.py`` and ``predict.py`` share (conf/evaluate.yaml, conf/predict.yaml), as keywords
    of ``evaluate_export`` / ``predict_signals``."""
    from omegaconf import OmegaConf

    return {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True) if cfg.get("dataset") else None,
        "cache_dir": cfg.paths.cache_dir,
        "device": cfg.device,
        "gpu_id": int(cfg.gpu_id),
        "batch_size": int(cfg.batch_size),
        "top_news": int(cfg.top_news),
    }


def debug_enabled() -> bool:
    return os.environ.get("LIGHTQUANT_DEBUG", "").lower() not in ("", "0", "false", "no")


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message}"


@contextmanager
def warnings_as_log_lines() -> Iterator[None]:
    """Python warnings (ours, e.g. SCINet's padding note, and the libraries') as one log line each,
    ``UserWarning: <message>``, in the console and the run's log, instead of a raw stderr print
    quoting whichever library line raised them (often Hydra's ``instantiate``)."""
    import warnings

    previous = warnings.formatwarning
    warnings.formatwarning = _warning_line
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        warnings.formatwarning = previous


@contextmanager
def one_line_errors(multirun: bool = False) -> Iterator[None]:
    """The entry points' wrapper: user errors as one line (module docstring), warnings as log lines."""
    with warnings_as_log_lines(), _user_errors(multirun):
        yield


@contextmanager
def _user_errors(multirun: bool) -> Iterator[None]:
    try:
        yield
    except UserError as e:
        if debug_enabled():
            raise
        if multirun:
            log.error("Trial failed: %s", e)
            raise
        log.debug("user error", exc_info=True)  # the run's log file keeps the traceback
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None
