"""Atomic writes (one helper for every output), the cache key, and folders that cannot be written."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys

import pytest

from lightquant.atomic import atomic_write_text, remove_stale_temporaries
from lightquant.data.cache import cached_panel
from lightquant.data.csmd import CSMDSource

from .test_bad_input import bars


def test_outputs_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by colleagues, as open() would make it


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a pid that no longer runs
    orphan = tmp_path / f".last.pt.{dead}.0123456789ab.tmp"
    orphan.write_text("half a checkpoint")
    live = tmp_path / f".last.pt.{os.getppid()}.0123456789ab.tmp"  # a writer still running: kept
    live.write_text("being written")
    atomic_write_text(target, "done")
    assert target.read_text() == "done" and not orphan.exists() and live.exists()
    assert remove_stale_temporaries(target) == 0


def folder(tmp_path):
    root = tmp_path / "prices"
    root.mkdir()
    for i, name in enumerate(["AAA", "BBB"]):
        bars(seed=i).to_csv(root / f"{name}.csv", index=False)
    return root


def test_an_edit_keeping_size_and_mtime_misses_the_cache(tmp_path):
    root = folder(tmp_path)
    src = CSMDSource([str(root)])
    first = cached_panel(src, tmp_path / "cache")
    f = root / "AAA.csv"
    st = f.stat()
    text = f.read_text()
    i = text.index("\n", text.index("\n") + 1) + 1  # the first data row
    row = text[i:text.index("\n", i)]
    digit = next(k for k, c in enumerate(row) if c.isdigit() and k > row.index(",") + 1)
    edited = row[:digit] + ("1" if row[digit] != "1" else "2") + row[digit + 1:]
    f.write_text(text[:i] + edited + text[i + len(row):])
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime as before
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    second = cached_panel(src, tmp_path / "cache")
    assert any((first.prices[k] != second.prices[k]).any() for k in first.prices)  # re-parsed, not stale


def test_an_unwritable_cache_folder_is_skipped_with_a_warning(tmp_path, caplog):
    root = folder(tmp_path)
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")  # unwritable even for root (CI runs as root)
    with caplog.at_level(logging.WARNING):
        panel = cached_panel(CSMDSource([str(root)]), cache)
    assert len(panel.stocks) == 2 and "continuing without it" in caplog.text


def test_a_run_dir_in_use_refuses_a_second_run(cfg_factory):
    from lightquant.errors import ConfigError
    from lightquant.rundir import lock_run_dir
    from lightquant.training import train

    cfg = cfg_factory()
    with lock_run_dir(cfg.paths.output_dir):  # another run holds it
        with pytest.raises(ConfigError, match=r"is in use by another run \(pid \d+\).*hydra.run.dir"):
            train(cfg)
    assert train(cfg)["test"]["n"] > 0  # free again once that run ended


def test_default_run_dirs_carry_the_pid():
    from omegaconf import OmegaConf

    import lightquant.training  # noqa: F401  registers lq.pid

    assert OmegaConf.create({"d": "${lq.pid:}"}).d == os.getpid()
