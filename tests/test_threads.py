"""The CPU thread policy: the cores other processes leave free, measured, re-decided after every epoch."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import namedtuple
from types import SimpleNamespace

import pytest
import torch

from lightquant.engine import threads
from lightquant.engine.threads import CpuThreads


def test_the_count_is_the_free_cores_within_one_and_the_cap():
    p = CpuThreads(cap=8)
    p.cpus = list(range(4))
    assert p.choose(0.0) == 4 and p.choose(0.1) == 4  # background noise keeps every core
    assert p.choose(0.8) == 3 and p.choose(1.0) == 3  # one core taken: one thread fewer
    assert p.choose(2.6) == 1 and p.choose(9.0) == 1  # never below one
    assert CpuThreads(cap=2).choose(0.0) <= 2  # never above the cap


def test_a_busy_process_is_measured():
    """Live: a child spinning through the whole interval is at least half a core of others' load
    (other tests running beside this one can only add to it)."""
    p = CpuThreads(cap=2)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the child is up and spinning
        p.others()
        time.sleep(0.5)
        assert p.others() > 0.5
    finally:
        busy.kill()
        busy.wait()


def test_this_processs_own_time_is_subtracted(monkeypatch):
    """Two CPUs 1.5 s busy over a second, 1.2 s of them this process's threads: 0.3 cores are others'."""
    cpu = namedtuple("scputimes", "user nice system idle iowait irq softirq steal guest guest_nice")
    own = namedtuple("pcputimes", "user system children_user children_system")
    clock = iter([100.0, 101.0, 101.0])  # the mark, the interval check, the next mark
    per_cpu = iter([[cpu(1, 0, 0, 9, 0, 0, 0, 0, 0, 0)] * 2, [cpu(1.75, 0, 0, 9.25, 0, 0, 0, 0, 0, 0)] * 2])
    own_times = iter([own(5.0, 1.0, 0, 0), own(6.0, 1.2, 0, 0)])
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads.psutil, "cpu_times", lambda percpu: next(per_cpu))
    p = CpuThreads.__new__(CpuThreads)
    p.cpus, p._proc = [0, 1], SimpleNamespace(cpu_times=lambda: next(own_times))
    p._mark()
    assert p.others() == pytest.approx(0.3)


def test_the_callback_steps_down_and_back_up_and_says_so(monkeypatch, caplog):
    before = torch.get_num_threads()
    p = CpuThreads(cap=2)
    p.cpus = [0, 1]
    load = iter([0.0, 1.0, 0.0])
    monkeypatch.setattr(p, "others", lambda wait=True: next(load))
    try:
        with caplog.at_level(logging.INFO, logger="lightquant.engine.threads"):
            assert p.start() == 2 and torch.get_num_threads() == 2
            p.on_epoch_end(None, {})
            assert torch.get_num_threads() == 1
            p.on_epoch_end(None, {})
            assert torch.get_num_threads() == 2
        assert "CPU threads: 2 (auto" in caplog.text and "CPU threads 2 -> 1" in caplog.text
    finally:
        torch.set_num_threads(before)


def test_an_epoch_shorter_than_a_measurement_is_not_slowed_down():
    p = CpuThreads(cap=1)
    assert p.others(wait=False) is None  # just marked: too short to tell, no sleep
    assert p.others() is not None  # start(): waits the interval out once
