"""Section 11: start-up. Wall time of the commands a user types before any training: ``--help``,
``--cfg job`` (the composed config), a config typo (refused before torch loads), ``debug=fast``
(the whole path: data, model, two short epochs, test), and the quick start ``make train`` runs;
each a fresh ``python`` process, run in turn, median of the repetitions.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, Section, Settings, Table, Target, child_env, fmt, median

#: (what, train.py arguments): each run with its own run dir under a temporary folder
COMMANDS = [
    ("python train.py --help", ["--help"]),
    ("python train.py --cfg job", ["--cfg", "job"]),
    ("a config typo: python train.py trainer.lr=-1", ["trainer.lr=-1"]),
    ("python train.py debug=fast", ["debug=fast"]),
]
QUICKSTART = ("make train: python train.py experiment=quickstart", ["experiment=quickstart"])
GOAL_S = 3.0
DESCRIPTION = ("Wall time of the commands a user types before any training: `--help`, `--cfg job` (the composed "
               "config), a config typo (refused before torch loads), `debug=fast` (the whole path: data, model, "
               "two short epochs, test), and the quick start `make train` runs; each a fresh `python` process, "
               "run in turn, median of the repetitions.")  # --help and --cfg job answer within a couple of seconds


def timed(args: list[str], tmp: Path, threads: int | None) -> float:
    """Seconds of one ``train.py`` process; ``threads=None``: torch's thread policy as a user gets it."""
    env = child_env(threads or 1)
    if threads is None:
        del env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]
    cmd = [sys.executable, "train.py", *args]
    if "--help" not in args and "--cfg" not in args:
        cmd += [f"hydra.run.dir={tmp / 'run'}_{time.monotonic_ns()}", f"paths.result_dir={tmp / 'result'}",
                f"paths.cache_dir={tmp / 'cache'}"]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=False, timeout=900)
    return time.perf_counter() - t0


def section(s: Settings) -> Section:
    t0 = time.perf_counter()
    reps = s.pick(1, 3, 5)
    commands = COMMANDS + ([] if s.mode == "smoke" else [QUICKSTART])
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        timed(["--cfg", "job"], Path(tmp), s.threads)  # first start: Python's own caches
        for what, args in commands:
            quick = args == QUICKSTART[1]  # as make train runs it: once, the default thread policy
            times = [timed(args, Path(tmp), None if quick else s.threads) for _ in range(1 if quick else reps)]
            data[what] = times
            rows.append([f"`{what}`", fmt(median(times), 1), len(times)])
    sec = Section(11, "Start-up", DESCRIPTION)
    sec.tables.append(Table("Wall time of a fresh process, seconds (median)", ["command", "s", "runs"], rows))
    worst = max(median(data[w]) for w, _ in COMMANDS[:2])
    sec.targets.append(Target("--help and --cfg job, slower of the two, s", worst, f"<= {GOAL_S:.0f}", worst <= GOAL_S))
    sec.notes.append(f"Each command with {s.threads} torch thread(s) but the quick start, which runs as `make train` "
                     "does (the default thread policy: the cores other processes leave free).")
    sec.notes.append("`--help`, `--cfg job` and a refused config import no torch: the entry points import the "
                     "config checks and Hydra only, and train.py loads the training code after the config is checked.")
    sec.data = {"times": data}
    sec.seconds = time.perf_counter() - t0
    return sec
