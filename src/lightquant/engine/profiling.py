"""``trainer.profile_steps=N`` (``debug=profile``): the torch profiler around N training steps.

A Trainer callback: it skips the first step (allocations, kernel choice), warms up on the
next, records N steps, then writes a Chrome / Perfetto trace (``profile/trace.json``: open it in
https://ui.perfetto.dev or chrome://tracing) and the operators' table sorted by their own time
(``profile/ops.txt``, its top rows also logged) into the run dir.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

log = logging.getLogger(__name__)
WAIT, WARMUP = 1, 1


class TorchProfiler:
    def __init__(self, steps: int, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir) / "profile"
        self.steps = steps
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self._prof = profile(activities=activities, schedule=schedule(wait=WAIT, warmup=WARMUP, active=steps, repeat=1),
                             on_trace_ready=self._write, record_shapes=True)
        self._prof.start()
        self._open = True

    def _write(self, prof) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(self.out_dir / "trace.json"))
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        (self.out_dir / "ops.txt").write_text(table + "\n", encoding="utf-8")
        log.info("Profile of %d training steps: %s (trace.json, ops.txt); top operators by own time:\n%s",
                 self.steps, self.out_dir, "\n".join(table.splitlines()[:15]))

    def on_train_step_end(self, trainer) -> None:
        if self._open:
            self._prof.step()

    def on_fit_end(self, trainer) -> None:
        if self._open:  # fewer steps than the schedule: write what was recorded
            self._open = False
            self._prof.stop()
