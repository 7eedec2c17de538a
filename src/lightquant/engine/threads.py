"""How many intra-op threads torch uses on the CPU: the cores other processes leave free.

torch's default is one thread per core. Its parallel regions end in a barrier, so when another
process keeps one core busy, every region waits for the thread that core preempts: on 2 cores
the default then trains 3-5x slower than one thread (BENCHMARKS.md section 10). On an idle
machine the extra threads pay (1.1-1.5x for most models). So by default (``trainer.num_threads:
null``) the thread count follows what other processes use: measured from the operating system's
CPU times (psutil), minus this process's own, when training starts and again after every epoch,
so a job started beside a running one makes both step down. ``trainer.num_threads=N`` fixes the
count; ``OMP_NUM_THREADS`` (torchrun sets 1 per process) caps it.

The count can change the last bits of some models' results (reductions split across threads),
so a run that must be bit-identical on a machine whose load varies fixes ``trainer.num_threads``.
"""

from __future__ import annotations

import logging
import math
import os
import time

import psutil
import torch

log = logging.getLogger(__name__)

#: a core counts as taken when other processes use more than this share of it: a thread sharing
#: a core stalls every barrier it reaches
MARGIN = 0.25
#: the shortest interval a measurement averages over (CPU times tick every 10 ms)
MIN_INTERVAL_S = 0.25
#: torch's own default (one per core, or OMP_NUM_THREADS), read before any run changes it: the cap
#: of every later run in this process (a sweep's trials share one)
TORCH_DEFAULT = torch.get_num_threads()


def _usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))  # taskset / container cpusets
    except AttributeError:  # macOS, Windows: every CPU
        return list(range(psutil.cpu_count() or 1))


def _busy_seconds(t) -> float:
    """A CPU's busy time: all of it but idle and I/O wait (guest time is already in user on Linux)."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0)


class CpuThreads:
    """Sets ``torch.set_num_threads`` to the usable cores not busy with other processes, at most
    ``cap`` (torch's default: one per core, or ``OMP_NUM_THREADS``). ``start()`` once the run's
    set-up is done (the set-up is the first measurement's interval); a Trainer callback after that,
    re-deciding after every epoch."""

    def __init__(self, cap: int | None = None):
        self.cap = max(1, cap or TORCH_DEFAULT)
        self.cpus = _usable_cpus()
        self.threads = self.cap  # the count last set
        self._proc = psutil.Process()
        self._mark()

    def _mark(self) -> None:
        self._t = time.monotonic()
        self._busy = self._cpus_busy()
        self._own = self._own_seconds()

    def _cpus_busy(self) -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        return sum(_busy_seconds(per_cpu[i]) for i in self.cpus if i < len(per_cpu))

    def _own_seconds(self) -> float:
        t = self._proc.cpu_times()
        return t.user + t.system

    def others(self, wait: bool = True) -> float | None:
        """Cores other processes kept busy since the last measurement, which this one ends. An
        interval shorter than MIN_INTERVAL_S is waited out, or with ``wait=False`` left running
        (None returned): short epochs are not slowed down, their decision waits for a longer span."""
        short = MIN_INTERVAL_S - (time.monotonic() - self._t)
        if short > 0:
            if not wait:
                return None
            time.sleep(short)
        t0, busy0, own0 = self._t, self._busy, self._own
        self._mark()
        return max(0.0, (self._busy - busy0 - (self._own - own0)) / (self._t - t0))

    def choose(self, others: float) -> int:
        return min(self.cap, max(1, math.floor(len(self.cpus) - others + MARGIN)))

    def start(self) -> int:
        others = self.others()
        n = self.threads = self.choose(others)
        torch.set_num_threads(n)
        log.info("CPU threads: %d (auto: %d usable cores, %.1f busy with other processes, at most %d; re-checked "
                 "every epoch; trainer.num_threads=N fixes it)", n, len(self.cpus), others, self.cap)
        return n

    def on_epoch_end(self, trainer, row: dict) -> None:
        others = self.others(wait=False)
        if others is None:
            return
        n, old = self.choose(others), torch.get_num_threads()
        if n != old:
            torch.set_num_threads(n)
            self.threads = n
            log.info("CPU threads %d -> %d: other processes kept %.1f of %d cores busy", old, n, others, len(self.cpus))


def cpu_threads(num_threads: int | None) -> CpuThreads | None:
    """``trainer.num_threads``: a number fixes torch's thread count now (None returned); null gives
    the policy above, which measures from now on and sets the count at ``start()``."""
    if num_threads:
        torch.set_num_threads(int(num_threads))
        log.info("CPU threads: %d (trainer.num_threads)", int(num_threads))
        return None
    return CpuThreads()
