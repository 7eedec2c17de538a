"""Read the jobs of a Hydra multirun / sweep directory into one table.

A job is any folder below the sweep dir with ``.hydra/overrides.yaml`` (written by Hydra
before the job starts); its ``metrics.json`` (written by ``lightquant.training.train`` at the
end) tells a finished run from a failed or unfinished one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lightquant.errors import MissingPathError
from lightquant.mappings import flatten

OK, FAILED = "ok", "failed"
#: a validation loss above this (BCE and hinge are ~0.7-1 for a useless model) is a diverged run:
#: its trial is failed, never ranked (lightquant.training.optimized_metric refuses it to the sweeper too)
EXPLODED_LOSS = 100.0


def job_error(job_dir: Path) -> str:
    """The one line saying why a job failed: its ``Trial failed: ...`` log line, else the last line of
    the traceback it logged; "" when its log has neither (e.g. still running)."""
    log = job_dir / "train.log"
    if not log.is_file():
        return ""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Trial failed: " in ln:
            return ln.split("Trial failed: ", 1)[1]
    tail = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception)\b", ln)]
    return tail[-1] if tail else ""
#: columns that describe the job rather than a setting or a metric
META = ("job", "status", "run_dir")


def parse_value(text: str) -> Any:
    """An override's value as a number when it is one (``1e-05`` too, which YAML 1.1 reads as a string)."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(lines: list[str]) -> dict[str, Any]:
    """``["trainer.lr=0.001", "model=alstm"]`` -> ``{"trainer.lr": 0.001, "model": "alstm"}``."""
    out: dict[str, Any] = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = parse_value(value)
    return out


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numbers of ``metrics.json`` as ``split/metric`` columns (``val/mcc``), top-level numbers as they are."""
    return {k: float(v) for k, v in flatten(metrics, "/").items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def find_jobs(sweep_dir: str | Path) -> list[Path]:
    """Job dirs in start order (the time Hydra wrote their overrides), then by name."""
    root = Path(sweep_dir)
    jobs = [p.parent.parent for p in root.rglob(".hydra/overrides.yaml")]
    return sorted(jobs, key=lambda d: (d.joinpath(".hydra", "overrides.yaml").stat().st_mtime, _natural(str(d))))


def read_job(job_dir: Path, sweep_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(overrides, row)`` of one job; ``row`` holds ``job``, ``status``, ``run_dir`` and its metrics."""
    overrides = parse_overrides(yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or [])
    row: dict[str, Any] = {"job": str(job_dir.relative_to(sweep_dir)), "status": FAILED, "run_dir": str(job_dir)}
    metrics_file = job_dir / "metrics.json"
    if metrics_file.is_file():
        row.update(flatten_metrics(json.loads(metrics_file.read_text())))
        loss = row.get("val/loss")
        if loss is not None and not (float(loss) <= EXPLODED_LOSS):  # NaN compares False
            row["error"] = f"validation loss {loss:g} exploded (> {EXPLODED_LOSS:g}): diverged"
        else:
            row["status"] = OK
    else:
        row["error"] = job_error(job_dir)
    return overrides, row


@dataclass(frozen=True)
class SweepSettings:
    """What the sweep itself says, read back from its first job's ``.hydra/`` files."""

    objective: str | None = None  # the config's optimized_metric
    direction: str | None = None  # the Optuna sweeper's; None for plain multiruns
    params: dict[str, str] = field(default_factory=dict)  # the sweeper's search space: {"trainer.lr": "tag(log, ...)"}


def sweep_settings(sweep_dir: str | Path) -> SweepSettings:
    jobs = find_jobs(sweep_dir)
    if not jobs:
        return SweepSettings()
    hydra_dir = jobs[0] / ".hydra"
    config = yaml.safe_load((hydra_dir / "config.yaml").read_text()) if (hydra_dir / "config.yaml").is_file() else {}
    hydra = yaml.safe_load((hydra_dir / "hydra.yaml").read_text()).get("hydra", {}) \
        if (hydra_dir / "hydra.yaml").is_file() else {}
    sweeper = hydra.get("sweeper") or {}
    direction = sweeper.get("direction")
    if isinstance(direction, list):
        direction = direction[0]  # multi-objective: ranked by the first
    return SweepSettings(
        objective=(config or {}).get("optimized_metric"),
        direction=str(direction).rsplit(".", 1)[-1] if direction else None,  # "Direction.maximize" -> "maximize"
        params={str(k): str(v) for k, v in (sweeper.get("params") or {}).items()},
    )


def collect_runs(sweep_dir: str | Path, searched: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """The jobs of ``sweep_dir`` as a table: one row per job with its varying overrides and metrics.

    Returns ``(runs, varying, common)``: ``varying`` are ``searched`` (e.g. the sweeper's
    parameters) plus every other override key whose value differs between jobs (table
    columns); ``common`` the overrides every job shares (e.g. the command line's fixed
    ones), kept out of the table. Rows are in start order.
    """
    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise MissingPathError(f"No Hydra jobs (*/.hydra/overrides.yaml) under {sweep_dir}")
    parsed = [read_job(j, sweep_dir) for j in jobs]
    keys = list(dict.fromkeys(k for ov, _ in parsed for k in ov))
    missing = object()
    differ = {k for k in keys if len({repr(ov.get(k, missing)) for ov, _ in parsed}) > 1}
    varying = list(dict.fromkeys([*(k for k in searched if k in keys), *(k for k in keys if k in differ)]))
    common = {k: parsed[0][0][k] for k in keys if k not in varying}
    rows = [{**row, **{k: ov.get(k) for k in varying}, "overrides": " ".join(f"{k}={v}" for k, v in ov.items())}
            for ov, row in parsed]
    runs = pd.DataFrame(rows)
    front = [*META, *varying, "overrides"]
    metrics = [c for c in runs.columns if c not in front]
    return runs[front + metrics], varying, common
