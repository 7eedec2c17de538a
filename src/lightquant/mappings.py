"""Nested mappings as flat ones: one helper for config comparisons and metric columns."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(d: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (``sep`` between the levels' keys)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, sep, f"{prefix}{k}{sep}") if isinstance(v, Mapping) else {f"{prefix}{k}": v})
    return out
