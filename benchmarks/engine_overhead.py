"""Section 1: engine overhead. Samples/s of the engine's training loop (``Trainer.train_epoch``
on ``MarketData``: batches gathered from the flat feature table) against the bare PyTorch
loop of :mod:`benchmarks.loops` (the same split pre-materialised as tensors, sliced per step),
for the models conf/benchmarks.yaml lists, at batch 64 and 512: same model weights, same optimizer and clipping,
same thread count, epochs interleaved.
"""

from __future__ import annotations

import time

import torch

from benchmarks.common import (
    PLAN,
    Section,
    Settings,
    Table,
    Target,
    build,
    fmt,
    interleaved,
    median,
    news_overrides,
    paired_ratio,
    subset,
)
from benchmarks.loops import BareLoop, engine, index_batch, materialise, twin

BATCHES = (64, 512)
GOAL = 0.95
DESCRIPTION = (
    "Samples/s of the engine's training loop (`Trainer.train_epoch`: batches gathered by index from "
    "the flat stock-day table, label-weighted loss, autocast/scaler hooks, loss logging) against a bare "
    "PyTorch loop over the same split materialised once as plain tensors (`x[idx]`, forward, BCE, "
    "backward, clipping, AdamW step; nothing else). Same model and initial weights, same batch, same "
    "thread count, the default synthetic market (50 stocks; news models with their news through TF-IDF), one "
    "epoch of each loop per round (a few optimizer steps: the samples/epoch column), rounds "
    "interleaved, engine / bare = median of the per-round ratios.")


def measure(model_name: str, steps: dict[int, int], s: Settings, data_overrides: list[str]) -> list[dict]:
    _, data, model = build([f"model={model_name}", *news_overrides(model_name), *data_overrides], s.out_dir / "cache")
    out = []
    for batch in BATCHES:
        n = min(steps[batch] * batch, len(data.splits["train"]))
        sub = subset(data, "train", n)
        trainer = engine(twin(model), batch)
        bare = BareLoop(twin(model), materialise(sub), batch)
        times = interleaved({"engine": lambda t=trainer, d=sub: t.train_epoch(d), "bare": bare.epoch}, s.n_reps)
        ratio = paired_ratio(times["bare"], times["engine"])  # engine samples/s over bare samples/s
        rounds = [b / e for b, e in zip(times["bare"], times["engine"])]  # the spread shows the noise
        # Where the two loops differ in work: building a batch (a gather from the flat table with
        # its windows computed, against slicing pre-materialised tensors), timed alone.
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:batch]
        full = bare.full
        gather = interleaved({"engine": lambda d=sub, i=idx: [d.batch("train", i) for _ in range(20)],
                              "bare": lambda f=full, i=idx: [index_batch(f, i) for _ in range(20)]}, s.n_reps)
        out.append({"model": model_name, "batch": batch, "samples": n, "engine_sps": n / median(times["engine"]),
                    "bare_sps": n / median(times["bare"]), "ratio": ratio, "range": (min(rounds), max(rounds)),
                    "gather_ms": {k: median(v) / 20 * 1e3 for k, v in gather.items()},
                    "step_ms": median(times["engine"]) / -(-n // batch) * 1e3, "times": times})
    return out


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA

    t0 = time.perf_counter()
    # Short epochs, many rounds: a burst of load from other jobs then spoils one pair, not the median.
    steps = {64: s.pick(2, 16, 48), 512: s.pick(1, 8, 16)}
    data_overrides = SMOKE_DATA if s.mode == "smoke" else []
    results = [r for m in PLAN["engine_overhead"] for r in measure(m, steps, s, data_overrides)]
    rows = [[r["model"], r["batch"], r["samples"], fmt(r["engine_sps"], 0), fmt(r["bare_sps"], 0), f"{r['ratio']:.3f}",
             f"{r['range'][0]:.2f} – {r['range'][1]:.2f}",
             f"{r['gather_ms']['engine']:.2f} / {r['gather_ms']['bare']:.2f} / {r['step_ms']:.1f}",
             "yes" if r["ratio"] >= GOAL else "**no**"] for r in results]
    sec = Section(1, "Engine overhead", DESCRIPTION)
    sec.tables.append(Table(
        f"Engine vs bare PyTorch loop, {s.n_reps} interleaved rounds (samples/s are medians on this machine)",
        ["model", "batch", "samples/epoch", "engine samples/s", "bare samples/s", "engine / bare (median)",
         "per-round range", "batch build ms: engine / bare / whole step", f">= {GOAL}"], rows))
    sec.notes.append("The per-round range is the machine's noise: rounds run back to back still differ by up to "
                     "~10 % either way on a shared machine, so a median within a few % of 1 is a tie.")
    costly = max(results, key=lambda r: r["gather_ms"]["engine"] / r["gather_ms"]["bare"])
    sec.notes.append("Batch build: the one step both loops do differently, timed alone (median of 20 builds): the "
                     "engine gathers each window from the flat table (and a news model's texts through the per-row "
                     "text index into the embedding table), the bare loop slices tensors materialised beforehand. "
                     f"At most ({costly['model']}, batch {costly['batch']}) the gather costs "
                     f"{costly['gather_ms']['engine'] / costly['gather_ms']['bare']:.1f}x the slice, "
                     f"{100 * costly['gather_ms']['engine'] / costly['step_ms']:.1f} % of a training step; the "
                     "materialised tensors it saves are in section 5.")
    worst = min(results, key=lambda r: r["ratio"])
    sec.targets.append(Target(f"engine / bare loop, worst case ({worst['model']}, batch {worst['batch']})",
                              worst["ratio"], f">= {GOAL}", worst["ratio"] >= GOAL))
    sec.data = {"results": results}
    sec.seconds = time.perf_counter() - t0
    return sec
