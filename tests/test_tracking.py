"""SwanLab tracking (offline into tmp, never the network), per-run plots, and no secrets in the repo."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lightquant.tracking import CurvesPlot, Tracker, plot_history, start_tracker
from lightquant.tracking.swanlab_tracker import _warn_no_dashboard, numeric_items

from .conftest import ROOT, TINY

HISTORY = [
    {"epoch": 1, "lr": 1e-3, "train/loss": 0.7, "val/loss": 0.69, "val/accuracy": 0.51, "val/mcc": 0.02, "val/f1": 0.6},
    {"epoch": 2, "lr": 5e-4, "train/loss": 0.68, "val/loss": 0.68, "val/accuracy": 0.55, "val/mcc": 0.1, "val/f1": 0.6},
]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def swanlab_runs(log_dir: Path) -> list[Path]:
    return sorted(p for p in log_dir.glob("run-*") if p.is_dir())


def offline(tmp_path: Path, **kw) -> Tracker:
    args = {"mode": "offline", "project": "lightquant-test", "experiment_name": "lstm-synthetic",
            "log_dir": tmp_path / "swanlog", "config": {"model": {"hidden_size": 16}, "seed": 1}, "probes": False}
    return start_tracker(**{**args, **kw})


def test_offline_run_logs_config_epochs_and_summary_without_network(tmp_path, no_network):
    import swanlab

    with offline(tmp_path) as tracker:
        for row in HISTORY:
            tracker.on_epoch_end(None, row)
        tracker.log_summary({"model": "lstm", "best_epoch": 2, "val": {"mcc": 0.1}, "test": {"mcc": 0.05, "n": 100}})
    assert not swanlab.has_run()  # finished on leaving the block
    (run,) = swanlab_runs(tmp_path / "swanlog")
    config = (run / "files" / "config.yaml").read_text()
    assert "hidden_size" in config and "best_epoch" in config
    assert "value: lstm" not in config  # the summary's "model" name did not overwrite the model config
    records = next(run.glob("*.swanlab")).read_bytes()
    for key in (b"train/loss", b"val/mcc", b"lr", b"best_val/mcc", b"test/mcc"):
        assert key in records


def test_failing_run_is_finished_and_the_next_one_starts(tmp_path, no_network):
    import swanlab

    with pytest.raises(FloatingPointError), offline(tmp_path, experiment_name="fails"):
        raise FloatingPointError("loss is nan")
    assert not swanlab.has_run()
    with offline(tmp_path, experiment_name="next") as tracker:
        tracker.log({"train/loss": 0.5}, step=1)
    assert len(swanlab_runs(tmp_path / "swanlog")) == 2


@pytest.mark.skipif(importlib.util.find_spec("swanboard") is not None, reason="the dashboard extra is installed")
def test_local_mode_without_the_dashboard_extra_writes_an_offline_run(tmp_path, no_network, caplog, capfd):
    _warn_no_dashboard.cache_clear()  # said once per process
    with caplog.at_level(logging.INFO), offline(tmp_path, mode="local") as tracker:
        assert tracker.mode == "offline"
    assert "make dashboard" in caplog.text
    # a quiet console: SwanLab's banner and sync hints go to the log, one "Tracking:" line says where
    out = capfd.readouterr()
    assert "swanlab" not in (out.out + out.err).lower()
    assert caplog.text.count("Tracking: SwanLab offline run in") == 1 and "swanlab sync" in caplog.text
    assert len(swanlab_runs(tmp_path / "swanlog")) == 1


def test_default_tracker_mode_is_the_one_swanlab_supports_without_deprecation(monkeypatch):
    import lightquant

    monkeypatch.delenv("SWANLAB_MODE", raising=False)  # the tests' own default is disabled
    assert lightquant.compose().tracker.mode == "offline"  # local is swanlab.deprecated.local since 0.8
    monkeypatch.setenv("SWANLAB_MODE", "local")
    assert lightquant.compose().tracker.mode == "local"


def test_cloud_mode_needs_the_api_key_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("SWANLAB_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="export SWANLAB_API_KEY="):
        offline(tmp_path, mode="cloud")
    with pytest.raises(ValueError, match="local, offline, cloud, disabled"):
        offline(tmp_path, mode="online-ish")


def test_disabled_mode_and_other_ranks_track_nothing(tmp_path):
    for tracker in (offline(tmp_path, mode="disabled"), offline(tmp_path, rank=1)):
        assert type(tracker) is Tracker
        with tracker:
            tracker.on_epoch_end(None, HISTORY[0])
            tracker.log_summary({"test": {"mcc": 0.1}})
    assert not (tmp_path / "swanlog").exists()


def test_numeric_items_flattens_and_keeps_finite_numbers():
    got = numeric_items({"a": 1, "b": {"c": 0.5, "d": "x", "e": float("nan")}, "f": True})
    assert got == {"a": 1.0, "b/c": 0.5}


def test_plot_history_and_curves_callback(tmp_path, monkeypatch):
    path = plot_history(HISTORY, tmp_path / "c.png", best_epoch=2, title="lstm")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    class FakeTrainer:
        history = HISTORY
        early_stopping = type("ES", (), {"best_epoch": 2})()

    monkeypatch.setenv("RANK", "1")  # only rank 0 draws
    CurvesPlot(tmp_path / "r1").on_fit_end(FakeTrainer())
    assert not (tmp_path / "r1" / "curves.png").exists()
    monkeypatch.setenv("RANK", "0")
    CurvesPlot(tmp_path / "r0").on_fit_end(FakeTrainer())
    assert (tmp_path / "r0" / "curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_train_py_tracks_offline_into_the_given_log_dir(tmp_path):
    """`python train.py tracker.mode=offline`: config with the run dir, epochs and test metrics, curves.png."""
    run_dir, log_dir = tmp_path / "run", tmp_path / "swanlog"
    cmd = [sys.executable, "train.py", *TINY, "trainer.epochs=2", f"hydra.run.dir={run_dir}",
           f"paths.cache_dir={tmp_path / 'cache'}", f"paths.result_dir={tmp_path / 'result'}",
           "tracker.mode=offline", f"tracker.log_dir={log_dir}", "tracker.probes=false"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = swanlab_runs(log_dir)
    config = (run / "files" / "config.yaml").read_text()
    assert str(run_dir) in config and "optimized_metric" in config
    records = next(run.glob("*.swanlab")).read_bytes()
    assert b"val/mcc" in records and b"test/accuracy" in records
    assert (run_dir / "curves.png").is_file()


# ------------------------------------------------------------------ secrets
# Key-like strings: an API key assigned a literal, api_key="...", long hex or base64 tokens.
SECRET_PATTERNS = [
    re.compile(r"SWANLAB_API_KEY\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{8,}"),
    re.compile(r"api[_-]?key\s*[:=]\s*['\"][^'\"<>{}$\s]{8,}['\"]", re.IGNORECASE),
    re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{32,}(?![0-9A-Za-z])"),
]
TOKEN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{32,}={0,2}")


def _looks_like_base64_secret(token: str) -> bool:
    if "/" in token and all(len(part) < 24 for part in token.split("/")):
        return False  # a path
    return any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token)


def test_no_api_key_or_secret_in_the_repository():
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    assert len(files) > 20
    assert not [f for f in files if Path(f).name in (".env", ".netrc")], "credential files must never be committed"
    found = []
    for name in filter(None, files):
        try:
            text = (ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the work tree
        for pattern in SECRET_PATTERNS:
            found += [f"{name}: {m.group(0)[:40]}" for m in pattern.finditer(text)]
        found += [f"{name}: {t[:40]}" for t in TOKEN.findall(text) if _looks_like_base64_secret(t)]
    assert not found, "key-like strings in the repository:\n" + "\n".join(found)


def test_the_secret_scan_would_catch_a_key():
    # assembled at run time so that this file itself holds no key-like literal
    fake = "Xy7rT9qL" + "mN2pW4sV"
    leaked = f'SWANLAB_API_KEY="{fake}"\nswanlab.login(api_key="{fake}")\ntoken = {"3f9a0c1b2d4e5f60" * 2}\n'
    assert all(p.search(leaked) for p in SECRET_PATTERNS)
    assert _looks_like_base64_secret("QmFzZTY0RW5jb2Rl" + "ZFNlY3JldEtleTEy")
    assert not _looks_like_base64_secret("/work/shared/datasets/CSMD50/price/abc")
