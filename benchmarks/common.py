"""Shared pieces of the benchmark sections: settings, machine facts, side-by-side timing,
measurement in child processes, configs, and the section result format.

Every figure the benchmarks quote as a target is a *ratio* of two things measured in the
same process, interleaved (A B, then B A, ...), so that the load of a shared machine hits
both sides alike; medians, not means, so one preempted repetition does not move the result.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CONF = ROOT / "conf"
#: default home of everything the benchmarks write (git-ignored by benchmarks/results/.gitignore)
RESULTS = ROOT / "benchmarks" / "results"
MODES = ("smoke", "quick", "full")

if str(SRC) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(SRC))


@dataclass
class Settings:
    """What every section receives: the mode, the thread count, and where to write."""

    mode: str = "quick"  # smoke (CI: seconds, figures meaningless) | quick | full
    threads: int = 1
    out_dir: Path = RESULTS
    reps: int | None = None  # interleaved repetitions; None: the mode's default
    quality_seeds: list[int] | None = None  # section 7: None = the mode's (quick 1 seed, full 3)
    quality_epochs: int | None = None  # section 7: None = the mode's (quick 5, full the config's)
    jobs: int = 1  # section 7: train.py processes at a time
    quality_variants: list[str] | None = None  # section 7: None = the mode's (quick none, full all)
    quality_confirm_seeds: list[int] | None = None  # section 7: seeds of each model's chosen config (full 1-5)

    def pick(self, smoke, quick, full):
        """The value for this mode."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.mode]

    @property
    def n_reps(self) -> int:
        return self.reps or self.pick(2, 9, 15)


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Target:
    name: str
    value: float
    goal: str  # e.g. ">= 0.95"
    met: bool


@dataclass
class Section:
    """One section's result: rendered into BENCHMARKS.md and dumped to JSON."""

    id: int
    title: str
    description: str  # what is measured and how the baseline is built, in prose
    command: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # raw measurements for the JSON output
    seconds: float = 0.0


# ------------------------------------------------------------------ environment
def set_threads(n: int) -> None:
    """One intra-op thread count for this process and (through the environment) its children."""
    import torch

    torch.set_num_threads(n)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def child_env(threads: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["SWANLAB_MODE"] = "disabled"  # never a tracker run from a benchmark, whatever the config says
    env.update(extra)
    return env


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    import torch

    from lightquant.evaluation.leaderboard import git_commit

    info = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "commit": git_commit(ROOT),  # "<sha>+dirty" with uncommitted changes to tracked files
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    if hasattr(os, "getloadavg"):  # a busy machine makes absolute figures noisy: say how busy
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    return info


def machine_line(info: dict[str, Any]) -> str:
    gpu = info["cuda"] or "no GPU"
    load = f", load average {info['load_avg_1m']} at start" if "load_avg_1m" in info else ""
    return (f"{info['cpu']}, {info['usable_cores']} of {info['logical_cores']} logical cores usable, "
            f"torch {info['torch']} ({info['torch_threads']} thread(s)), Python {info['python']}, {gpu}{load}")


# --------------------------------------------------------------------- timing
def interleaved(cases: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each case over ``reps`` rounds, alternating the order every round
    (A B, B A, ...) so slow phases of a shared machine fall on both sides alike."""
    names = list(cases)
    for _ in range(warmup):  # first calls allocate, JIT-select kernels, fault pages in
        for n in names:
            cases[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else reversed(names):
            t0 = time.perf_counter()
            cases[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-round ratios num[i] / den[i]: each pair ran back to back."""
    return median([a / b for a, b in zip(num, den)])


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    """b in y ~ a * x**b (least squares in log-log): 1 = linear growth, 0 = constant."""
    import numpy as np

    if len(x) < 2:
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


# ------------------------------------------------------- child processes (memory)
def run_child(target: str, kwargs: dict, threads: int, timeout: float = 3600, env: dict | None = None,
              inprocess: bool = False) -> dict:
    """Run ``module:function(**kwargs)`` in a fresh Python and return its dict, plus
    ``rss_base_mb`` (peak RSS after the imports) and ``rss_peak_mb`` (peak RSS at the end) of
    that process (:func:`benchmarks.child.peak_rss_mb`): a fresh process per measurement, so
    one measurement's allocations never raise another's peak.

    ``inprocess`` (smoke mode only) calls the function here instead: the same code path without
    the few seconds a fresh interpreter costs, and memory figures that mean nothing."""
    if inprocess:
        import importlib

        from benchmarks.child import peak_rss_mb

        module, _, func = target.partition(":")
        rss = peak_rss_mb()
        out = getattr(importlib.import_module(module), func)(**kwargs)
        return {**out, "rss_base_mb": rss, "rss_peak_mb": peak_rss_mb(), "import_s": 0.0}
    cmd = [sys.executable, "-m", "benchmarks.child", target, json.dumps(kwargs)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env or child_env(threads), capture_output=True, text=True, timeout=timeout,
                          check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {target}({kwargs}) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("BENCH_RESULT "):])


# ---------------------------------------------------------------------- configs
def compose(overrides: Sequence[str] = ()):
    """The project's config as ``python train.py <overrides>`` composes it (outside a Hydra run)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import lightquant

    cfg = lightquant.compose(*overrides)
    HydraConfig.instance().set_config(cfg)  # so ${hydra:...} (model_name, output_dir) resolves
    with open_dict(cfg):
        del cfg.hydra
    return cfg


def news_overrides(model: str) -> list[str]:
    """Models that read news need use_news=true (as in README)."""
    return ["use_news=true"] if model in NEWS_MODELS else []


def conf_file(name: str):
    """``conf/<name>.yaml`` as plain Python (conf/zoo.yaml: the models in order; conf/benchmarks.yaml:
    what each section measures)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))


def reads_news(model: str) -> bool:
    """Whether ``model=<model>``'s class declares that it reads news (``needs.news``), through the builder."""
    from lightquant.builder import model_needs

    return model_needs(compose([f"model={model}"])).news


ALL_MODELS = tuple(conf_file("zoo")["models"])
NEWS_MODELS = tuple(m for m in ALL_MODELS if reads_news(m))
PLAN = conf_file("benchmarks")


def build(overrides: Sequence[str], cache_dir: Path):
    """(cfg, data, model) through lightquant.training's own build_data/build_model, seeded."""
    from omegaconf import open_dict

    from lightquant.builder import build_data, build_model
    from lightquant.engine import seed_everything

    cfg = compose(list(overrides))
    with open_dict(cfg):
        cfg.paths.cache_dir = str(cache_dir)
    seed_everything(int(cfg.seed), deterministic=False)
    data = build_data(cfg)
    seed_everything(int(cfg.seed), deterministic=False)
    return cfg, data, build_model(cfg, data)


def subset(data, split: str, n: int):
    """``data`` with ``split`` cut to its first ``n`` items (same tensors, fewer samples)."""
    from dataclasses import replace

    from lightquant.data.market import Split

    s = data.splits[split]
    cut = Split(*(t[:n] if t is not None else None for t in (s.end_row, s.y, s.ret, s.mask, s.day)))
    return replace(data, splits={**data.splits, split: cut})


def mean_std(xs: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """"m ± s" (sample std) of ``xs`` times ``scale``; "m" for one value, "—" for none."""
    if not xs:
        return "—"
    m = statistics.mean(xs) * scale
    return f"{m:.{digits}f}" if len(xs) == 1 else f"{m:.{digits}f} ± {statistics.stdev(xs) * scale:.{digits}f}"


def fmt(x: float, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"
