"""The project's own error types: problems with what the user gave (config, data, files), whose
messages name the key, file or row and the fix. Entry points print them as one line
(:func:`lightquant.entry.one_line_errors`); any other exception is a bug and keeps its traceback.

At the package top (like ``batch.py``) so that data, engine, evaluation and entry points share
them. Each also subclasses the builtin a caller would expect (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what, where and how."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work; the message names the key and a fix."""


class DataError(UserError, ValueError):
    """Input data that cannot be used; the message names the file (and row or column)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint or export that cannot be read or does not fit; the message names the file."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the config points at does not exist."""


class LaunchError(UserError, RuntimeError):
    """The run was started in a way that cannot work (torchrun flags, a missing GPU or API key)."""
