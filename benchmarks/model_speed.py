"""Section 10: model speed. Training throughput of every model through the engine on one thread,
and what keeping only a batch's used text slots (``MarketData.batch``) gives the news models.

Throughput: each model's ``Trainer.train_epoch`` over the same training items, repeated, median
epoch time, at batch 64 and 512. Text slots: two copies of each news model with the same weights
take training steps on the same batches in alternation (rounds swapped A B / B A), one on the
batch as ``MarketData.batch`` gives it (the slots some window uses), one on the same batch widened
back to all ``max_num_tweets_len`` slots (what every step computed before); paired ratio of the
round times, and the largest difference of the two copies' outputs on a fresh batch afterwards.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import (
    ALL_MODELS,
    NEWS_MODELS,
    ROOT,
    Section,
    Settings,
    Table,
    Target,
    build,
    child_env,
    fmt,
    interleaved,
    median,
    news_overrides,
    paired_ratio,
    subset,
)
from benchmarks.loops import BareLoop, engine, twin

DESCRIPTION = (
    "How fast each model trains, through the project's engine (AdamW, clipping, the model's extra loss), one "
    "thread, fp32: train samples/s = stock-day samples of an epoch / median epoch time (DTML's items, and so its "
    "batches, are dates of all their stocks: its samples are their stock-days). Parameters are the model's at its "
    "conf/ defaults. The second table times the news models' steps on the text slots a batch uses against all "
    "`max_num_tweets_len` slots (the padding was masked, so the outputs agree; the largest difference is shown): "
    "two copies with the same weights, the same batches, rounds alternating."
)


def full_width(data, batch):
    """``batch`` with all of ``data``'s text slots, as batches were built before unused slots were dropped."""
    rows = batch.row[..., None] + data._offsets
    slots = data.row_news[rows]
    return replace(batch, news=data.news_emb[slots], news_mask=slots > 0)


def epoch_data(name: str, overrides: list[str], s: Settings, items: int):
    """(data cut to about ``items`` training samples, model, samples per epoch) for ``name``."""
    _, data, model = build([f"model={name}", *news_overrides(name), *overrides], s.out_dir / "cache")
    if data.layout == "date":  # one item is a date's stocks: as many date items as hold ~``items`` stock-days
        per_item = float(data.splits["train"].mask.sum()) / max(len(data.splits["train"]), 1)
        items = max(1, round(items / per_item))
    data = subset(data, "train", min(items, len(data.splits["train"])))
    tr = data.splits["train"]
    samples = int(tr.mask.sum()) if data.layout == "date" else len(tr)  # stock-days, whatever the item layout
    return data, model, samples


def throughput(name: str, overrides: list[str], s: Settings, items: int) -> dict:
    data, model, samples = epoch_data(name, overrides, s, items)
    out = {"model": name, "params": sum(p.numel() for p in model.parameters()), "items": samples}
    for bs in (64, 512):
        trainer = engine(twin(model), bs)
        times = interleaved({"epoch": lambda: trainer.train_epoch(data)}, reps=s.pick(1, 3, 5))["epoch"]
        out[f"samples_per_s_{bs}"] = out["items"] / median(times)
    return out


@contextmanager
def busy_core(seconds: float):
    """Another process keeping one core busy (a spinning Python loop), for at most ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", f"import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)  # running before the first measurement
        yield
    finally:
        proc.kill()
        proc.wait()


def thread_policy(name: str, overrides: list[str], s: Settings, items: int) -> dict:
    """Batch-64 epochs on one thread, on all cores (torch's default) and under the default policy
    (``lightquant.engine.threads``: re-decided before every epoch, as after every epoch in a run),
    interleaved; on the idle machine, then beside a busy core."""
    from lightquant.engine.threads import CpuThreads

    data, model, samples = epoch_data(name, overrides, s, items)
    trainer = engine(twin(model), 64)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out = {"model": name, "cores": cores}
    for load in ("idle", "loaded"):
        policy, chosen = CpuThreads(cap=cores), []

        def fixed(n):
            return lambda: (torch.set_num_threads(n), trainer.train_epoch(data))

        def auto():
            torch.set_num_threads(policy.threads)  # the other cases changed it
            policy.on_epoch_end(None, {})
            chosen.append(torch.get_num_threads())
            trainer.train_epoch(data)

        cases = {"one": fixed(1), "all": fixed(cores), "auto": auto}
        reps = s.pick(1, 5, 15)  # the policy's count equals one of the others: only noise moves the ratio
        with busy_core(600) if load == "loaded" else contextlib.nullcontext():
            policy.start()  # as a run starts: the load measured over a first interval
            times = interleaved(cases, reps=reps)
        best = max(("one", "all"), key=lambda k: -median(times[k]))
        out[load] = {k: samples / median(v) for k, v in times.items()} | {
            "auto_threads": chosen[1:], "best": best,
            # per-round ratios: each round ran the cases back to back, so slow phases cancel
            "auto_vs_all": paired_ratio(times["all"], times["auto"]),
            "auto_vs_best": paired_ratio(times[best], times["auto"])}
    torch.set_num_threads(s.threads)
    return out


def slots(name: str, overrides: list[str], s: Settings, label: str) -> dict:
    _, data, model = build([f"model={name}", *news_overrides(name), *overrides], s.out_dir / "cache")
    gen = torch.Generator().manual_seed(0)
    n = len(data.splits["train"])
    batches = [data.batch("train", torch.randperm(n, generator=gen)[:64]) for _ in range(s.pick(2, 20, 40))]
    kept, every = BareLoop(twin(model), None, 64), BareLoop(twin(model), None, 64)
    wide = [full_width(data, b) for b in batches]

    def run(loop, bs):
        loop.model.train()
        for b in bs:
            loop.step(b)

    times = interleaved({"kept": lambda: run(kept, batches), "all": lambda: run(every, wide)}, reps=s.pick(2, 5, 9))
    probe = data.batch("train", torch.arange(min(256, n)))
    kept.model.eval()
    with torch.no_grad():
        diff = float((kept.model(probe) - kept.model(full_width(data, probe))).abs().max())
    widths = [b.news.shape[-2] for b in batches]
    return {"model": name, "data": label, "slots": data.row_news.shape[1], "used": median(widths),
            "real_share": float(sum(int(b.news_mask.sum()) for b in wide) / sum(b.news_mask.numel() for b in wide)),
            "kept_s": median(times["kept"]), "all_s": median(times["all"]), "speedup": paired_ratio(times["all"], times["kept"]),
            "max_abs_diff": diff, "steps": len(batches)}


#: the last commit before this section's speed work (text slots, thread policy, batched SCINet, the
#: StockNet/PEN decoders, fused AdamW, the CPU dropout mask): what "before" means below
BASELINE = "3114a73"
#: the models the speed work was for
VS_MODELS = ("scinet", "stocknet", "han", "pen")


def unpack(commit: str, dest: Path) -> bool:
    """``src/`` and ``conf/`` of ``commit`` under ``dest`` (False when this clone lacks the commit)."""
    out = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src", "conf"], capture_output=True, check=False)
    if out.returncode != 0:
        return False
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse links and paths leaving dest
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return True


def vs_commit(s: Settings, market: list[str], text_data: list[str], label: str) -> list[dict] | None:
    """Each of VS_MODELS trained through BASELINE's engine and this checkout's, one child process per
    epoch series (``speed_child.py``: a package can be imported once per process), the two trees
    alternating round by round; batch 64, one thread. None when the clone lacks BASELINE."""
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        if not unpack(BASELINE, before):
            return None
        trees = {"before": before, "now": ROOT}
        rows = []
        for model in s.pick(VS_MODELS[:1], VS_MODELS, VS_MODELS):  # smoke: the mechanics, one model
            data = [*text_data, "use_news=true"] if model in NEWS_MODELS else market
            speed = {name: [] for name in trees}
            for r in range(s.pick(1, 2, 3)):
                for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                    cmd = [sys.executable, str(ROOT / "benchmarks" / "speed_child.py"), "--root", str(trees[name]),
                           "--model", model, "--items", str(s.pick(128, 1024, 2048)), "--reps", str(s.pick(1, 3, 3)),
                           "--cache", str(s.out_dir / "cache-vs" / name), "--", *data]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=child_env(1), cwd=ROOT)
                    speed[name].append(json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"])
            rows.append({"model": model, "data": label if model in NEWS_MODELS else market[0],
                         "before": median(speed["before"]), "now": median(speed["now"]),
                         "ratio": median([n / b for n, b in zip(speed["now"], speed["before"])]), "rounds": speed})
        return rows


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA, data_root

    t0 = time.perf_counter()
    market = SMOKE_DATA if s.mode == "smoke" else [f"dataset.source.n_stocks={s.pick(8, 20, 50)}"]
    items = s.pick(256, 4096, 16384)
    speed = [throughput(m, market, s, items) for m in ALL_MODELS]
    sec = Section(10, "Model speed", DESCRIPTION)
    sec.tables.append(Table(
        f"Training throughput, synthetic market ({market[0]}), about {items} training samples per epoch (fewer when "
        "the split is smaller), one thread",
        ["model", "parameters", "train samples/s, batch 64", "train samples/s, batch 512"],
        [[r["model"], f"{r['params']:,}", fmt(r["samples_per_s_64"], 0), fmt(r["samples_per_s_512"], 0)]
         for r in speed]))
    root = data_root()
    if s.mode != "smoke" and root is not None and (root / "CSMD50").is_dir():
        text_data, label = ["dataset=csmd50", f"dataset.root={root / 'CSMD50'}"], "CSMD50 sample"
    else:
        text_data, label = market, "synthetic market"
    res = [slots(m, text_data, s, label) for m in NEWS_MODELS]
    sec.tables.append(Table(
        f"News models: steps on the used text slots vs all slots, batch 64, {label}, one thread",
        ["model", "slots (max_num_tweets_len)", "slots used per batch (median)", "real texts among all slots",
         "s / round, used slots", "s / round, all slots", "speed-up", "max |Δ logit|"],
        [[r["model"], r["slots"], fmt(r["used"], 0), f"{100 * r['real_share']:.1f} %", fmt(r["kept_s"], 3),
          fmt(r["all_s"], 3), f"{r['speedup']:.2f}x", f"{r['max_abs_diff']:.1e}"] for r in res]))
    pol = [thread_policy(m, market, s, s.pick(256, 2048, 2048)) for m in ALL_MODELS]
    cores = pol[0]["cores"]
    rows = []
    for r in pol:
        i, ld = r["idle"], r["loaded"]
        rows.append([r["model"], fmt(i["one"], 0), fmt(i["all"], 0), fmt(i["auto"], 0), f"{i['auto_vs_all']:.2f}",
                     fmt(ld["one"], 0), fmt(ld["all"], 0), fmt(ld["auto"], 0), f"{ld['auto_vs_best']:.2f}",
                     f"{median(i['auto_threads']):.0f} / {median(ld['auto_threads']):.0f}"])
    sec.tables.append(Table(
        f"CPU thread policy: train samples/s at batch 64 ({market[0]}), one thread, all {cores} cores (torch's "
        "default) and the default policy (`trainer.num_threads: null`), on the idle machine and with another "
        "process keeping one core busy (started and stopped by this benchmark)",
        ["model", "idle: 1 thread", f"idle: {cores}", "idle: policy", "idle: policy / torch default",
         "loaded: 1 thread", f"loaded: {cores}", "loaded: policy", "loaded: policy / best",
         "threads chosen (idle / loaded)"], rows))
    worst_idle = min(r["idle"]["auto_vs_all"] for r in pol)
    worst_load = min(r["loaded"]["auto_vs_best"] for r in pol)
    sec.targets.append(Target("thread policy / torch's default on the idle machine, worst model", worst_idle,
                              ">= 0.90", worst_idle >= 0.90))
    sec.targets.append(Target("thread policy / best of 1 and all threads beside a busy core, worst model", worst_load,
                              ">= 0.90", worst_load >= 0.90))
    sec.notes.append(
        "Thread policy: the default `trainer.num_threads: null` sets torch's intra-op threads to the usable cores "
        "that other processes leave free (their CPU time from the operating system, this process's own subtracted; "
        "a core counts as taken above a quarter busy), at most torch's default, measured as the run starts and "
        "re-decided after every epoch (here before every policy epoch). The ratios are medians of per-round "
        "ratios (each round runs the three cases back to back, order alternating); 'best' is the faster of 1 "
        "thread and all cores in that condition. With one core busy, all cores collapse because each parallel "
        "region waits for the thread the busy core preempts.")
    vs = vs_commit(s, market, text_data, label)
    if vs is None:
        sec.notes.append(f"This clone lacks commit {BASELINE}: no comparison with the engine before the speed work.")
    else:
        sec.tables.append(Table(
            f"Against commit {BASELINE} (before the speed work): train samples/s at batch 64, one thread, each tree's "
            "own engine, model and optimizer defaults, the trees alternating round by round",
            ["model", "data", f"samples/s at {BASELINE}", "samples/s now", "now / before (median of rounds)"],
            [[r["model"], r["data"], fmt(r["before"], 0), fmt(r["now"], 0), f"{r['ratio']:.2f}x"] for r in vs]))
        worst = min(vs, key=lambda r: r["ratio"])
        sec.targets.append(Target(f"now / {BASELINE}, worst of {', '.join(r['model'] for r in vs)} ({worst['model']})",
                                  worst["ratio"], ">= 2.0", worst["ratio"] >= 2.0))
        sec.notes.append(
            f"Against {BASELINE}: each round runs `benchmarks/speed_child.py` once per tree (that commit's `src/` and "
            "`conf/` unpacked by `git archive`, and this checkout), a warm-up epoch then the median of timed epochs "
            "over the same training samples; the ratio is the median of the per-round ratios. The results of the "
            "rewritten parts equal the earlier code's within float tolerance (tests: the text slots in "
            "tests/test_news_slots.py, SCINet's per-block tree in tests/test_scinet.py, the StockNet/PEN per-day "
            "decoders in tests/test_stocknet.py and tests/test_pen.py, the attention context in tests/test_models.py); "
            "the dropout masks and the fused AdamW step draw or round differently, as any seed change would.")
    sec.notes.append("Not yet measured here: FLOPs per sample and the share of a measured GEMM rate, and the "
                     "research code at equal settings.")
    sec.data = {"throughput": speed, "slots": res, "threads": pol, "vs_commit": vs}
    sec.seconds = time.perf_counter() - t0
    return sec
