"""Section 10: model speed. Training throughput of every model through the engine on one thread,
and what keeping only a batch's used text slots (``MarketData.batch``) gives the news models.

Throughput: each model's ``Trainer.train_epoch`` over the same training items, repeated, median
epoch time, at batch 64 and 512; FLOPs of one counted training step per sample, and the share of a
measured GEMM rate they reach. Text slots: two copies of each news model with the same weights
take training steps on the same batches in alternation (rounds swapped A B / B A), one on the
batch as ``MarketData.batch`` gives it (the slots some window uses), one on the same batch widened
back to all ``max_num_tweets_len`` slots (what every step computed before); paired ratio of the
round times, and the largest difference of the two copies' outputs on a fresh batch afterwards.
Then the thread policy idle and loaded, the speed against the commit before the speed work, and
against the research code this project replaces when a checkout of it is given
(``LIGHTQUANT_RESEARCH_CODE``).
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
    PLAN,
    ROOT,
    Section,
    Settings,
    Table,
    Target,
    build,
    child_env,
    compose,
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


def lstm_flops(m: torch.nn.LSTM, steps: int) -> int:
    """Forward FLOPs of ``m`` over ``steps`` (sample, time step) pairs: four gates, each a matmul of
    the layer input and of the hidden state (a multiply-add is two FLOPs)."""
    dirs, h, total = 2 if m.bidirectional else 1, m.hidden_size, 0
    for layer in range(m.num_layers):
        inp = m.input_size if layer == 0 else h * dirs
        total += dirs * 4 * 2 * steps * (inp + h) * h
    return total


def flops_per_sample(model: torch.nn.Module, batch, samples: int) -> float:
    """FLOPs of one training step (forward, loss, backward) on ``batch`` per sample, counted by
    torch's FlopCounterMode (matmuls, convolutions, attention). nn.LSTM runs one fused CPU kernel
    the counter cannot see: each LSTM it counted nothing for is counted analytically, forward from
    its sizes and the steps it ran, backward as twice that (the gradients of inputs and weights)."""
    from torch.nn.utils.rnn import PackedSequence
    from torch.utils.flop_counter import FlopCounterMode

    loop = BareLoop(twin(model), None, 64)
    steps: dict[str, int] = {}
    hooks = []
    for name, m in loop.model.named_modules():
        if isinstance(m, torch.nn.LSTM):
            def seen(mod, args, out, name=name):
                x = args[0]
                n = int(x.batch_sizes.sum()) if isinstance(x, PackedSequence) else x.shape[0] * x.shape[1]
                steps[name] = steps.get(name, 0) + n
            hooks.append(m.register_forward_hook(seen))
    loop.model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            loop.step(batch)
    finally:
        for h in hooks:
            h.remove()
    counted = counter.get_flop_counts()  # keyed "<model class>.<module name>"
    root = type(loop.model).__name__
    lstms = dict(loop.model.named_modules())
    extra = sum(3 * lstm_flops(lstms[n], k) for n, k in steps.items()
                if not sum(counted.get(f"{root}.{n}", {}).values()))
    return (counter.get_total_flops() + extra) / samples


def gemm_rate(n: int = 1024, reps: int = 5) -> float:
    """FLOP/s of an fp32 (n, n) @ (n, n) matmul on this process's threads: the machine's ceiling
    the models' share is measured against."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / median(interleaved({"gemm": lambda: a @ b}, reps=reps)["gemm"])


def throughput(name: str, overrides: list[str], s: Settings, items: int) -> dict:
    data, model, samples = epoch_data(name, overrides, s, items)
    out = {"model": name, "params": sum(p.numel() for p in model.parameters()), "items": samples}
    b = data.batch("train", torch.arange(min(64, len(data.splits["train"]))))
    per_batch = int(b.y_mask.sum()) if data.layout == "date" and b.y_mask is not None else b.stock.shape[0]
    out["flops_per_sample"] = flops_per_sample(model, b, per_batch)
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
VS_MODELS = tuple(PLAN["model_speed"]["against_commit"])


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


def alternate_children(cmds: dict[str, list[str]], rounds: int) -> dict[str, list[float]]:
    """samples/s of each child command (its last stdout line is JSON), the commands alternating round by
    round (A B, B A, ...): one process per measurement, so each imports its own tree once."""
    speed = {name: [] for name in cmds}
    for r in range(rounds):
        for name in (list(cmds) if r % 2 == 0 else list(reversed(cmds))):
            out = subprocess.run(cmds[name], capture_output=True, text=True, check=True, env=child_env(1), cwd=ROOT)
            speed[name].append(json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"])
    return speed


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
            cmds = {name: [sys.executable, str(ROOT / "benchmarks" / "speed_child.py"), "--root", str(tree),
                           "--model", model, "--items", str(s.pick(128, 1024, 2048)), "--reps", str(s.pick(1, 3, 3)),
                           "--cache", str(s.out_dir / "cache-vs" / name), "--", *data] for name, tree in trees.items()}
            speed = alternate_children(cmds, s.pick(1, 2, 3))
            rows.append({"model": model, "data": label if model in NEWS_MODELS else market[0],
                         "before": median(speed["before"]), "now": median(speed["now"]),
                         "ratio": paired_ratio(speed["now"], speed["before"]), "rounds": speed})
        return rows


#: a checkout of the research code this project replaces (github.com/ECNU-CILAB/LightQuant), when the
#: person running the benchmarks has one; neither shipped nor downloaded
RESEARCH_ENV = "LIGHTQUANT_RESEARCH_CODE"


def vs_research(s: Settings, market: list[str]) -> list[dict] | None:
    """LSTM and SCINet through the research code's own loop (``research_child.py``) and through this
    project's engine (``speed_child.py``) at equal settings, one child process each, alternating round
    by round; batch 64, one thread. None when no checkout is given."""
    from benchmarks.research_child import SETTINGS

    root = os.environ.get(RESEARCH_ENV)
    if not root:
        return None
    if not (Path(root) / "model").is_dir():
        raise SystemExit(f"{RESEARCH_ENV}={root}: no model/ folder there; point it at a checkout of the research "
                         "code (github.com/ECNU-CILAB/LightQuant) or unset it")
    items, reps = str(s.pick(128, 1024, 2048)), str(s.pick(1, 3, 3))
    rows = []
    for model in s.pick(tuple(SETTINGS)[:1], tuple(SETTINGS), tuple(SETTINGS)):
        cmds = {
            "research": [sys.executable, str(ROOT / "benchmarks" / "research_child.py"), "--root", root,
                         "--model", model, "--items", items, "--reps", reps],
            "project": [sys.executable, str(ROOT / "benchmarks" / "speed_child.py"), "--root", str(ROOT),
                        "--model", model, "--items", items, "--reps", reps, "--cache", str(s.out_dir / "cache-vs" / "now"),
                        "--", *market, *SETTINGS[model]["project"]],
        }
        speed = alternate_children(cmds, s.pick(1, 2, 3))
        rows.append({"model": model, "settings": " ".join(SETTINGS[model]["project"]),
                     "research": median(speed["research"]), "project": median(speed["project"]),
                     "ratio": paired_ratio(speed["project"], speed["research"]), "rounds": speed})
    return rows


def section(s: Settings) -> Section:
    from benchmarks.quality import SMOKE_DATA, data_root, dataset_available

    t0 = time.perf_counter()
    market = SMOKE_DATA if s.mode == "smoke" else [f"dataset.source.n_stocks={s.pick(8, 20, 50)}"]
    items = s.pick(256, 4096, 16384)
    speed = [throughput(m, market, s, items) for m in ALL_MODELS]
    gemm = gemm_rate(reps=s.pick(2, 5, 9))
    for r in speed:
        r["gemm_share"] = r["flops_per_sample"] * r["samples_per_s_64"] / gemm
    sec = Section(10, "Model speed", DESCRIPTION)
    sec.tables.append(Table(
        f"Training throughput, synthetic market ({market[0]}), about {items} training samples per epoch (fewer when "
        "the split is smaller), one thread",
        ["model", "parameters", "train samples/s, batch 64", "train samples/s, batch 512",
         "MFLOP / sample (forward + backward)", "share of the GEMM rate, batch 64"],
        [[r["model"], f"{r['params']:,}", fmt(r["samples_per_s_64"], 0), fmt(r["samples_per_s_512"], 0),
          fmt(r["flops_per_sample"] / 1e6, 2), f"{100 * r['gemm_share']:.1f} %"] for r in speed]))
    sec.notes.append(
        "FLOPs: one training step at batch 64 (forward, loss, backward; a multiply-add is two FLOPs) counted by "
        "`torch.utils.flop_counter.FlopCounterMode`, which counts matrix products, convolutions and attention, "
        "not elementwise work (activations, dropout, the optimizer); nn.LSTM's fused CPU kernel is invisible to it, "
        "so each LSTM is counted from its sizes and the time steps it ran, backward as twice the forward. Share of "
        f"the GEMM rate: FLOPs / sample x samples/s at batch 64, over an fp32 1024 x 1024 matmul on one thread "
        f"measured in this run ({gemm / 1e9:.1f} GFLOP/s): how far each model is from what the core does on "
        "large products; small models are bound by per-operator overhead instead.")
    root = data_root()
    text = PLAN["model_speed"]["text_dataset"]
    if s.mode != "smoke" and root is not None and dataset_available(text, root):
        # its folder spelled out: the earlier commit's tree composes its own conf, without LIGHTQUANT_DATA
        folder = compose([f"dataset={text}", f"paths.data_dir={root}"]).dataset.root
        text_data, label = [f"dataset={text}", f"dataset.root={folder}"], text
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
    research = vs_research(s, market)
    if research is None:
        sec.notes.append(
            f"Against the research code this project replaces: not measured in this run (set {RESEARCH_ENV} to a "
            "checkout of github.com/ECNU-CILAB/LightQuant to add the table).")
    else:
        sec.tables.append(Table(
            "Against the research code this project replaces (github.com/ECNU-CILAB/LightQuant, its models and its "
            f"training loop), equal settings, synthetic windows of the same shape ({market[0]} on this side): train "
            "samples/s at batch 64, one thread, the two alternating round by round",
            ["model", "settings (this project's overrides)", "samples/s, research code", "samples/s, this project",
             "this project / research code (median of rounds)"],
            [[r["model"], f"`{r['settings']}`", fmt(r["research"], 0), fmt(r["project"], 0), f"{r['ratio']:.2f}x"]
             for r in research]))
        sec.notes.append(
            "Against the research code: `benchmarks/research_child.py` imports its `model/` unchanged and runs the loop "
            "of its `single_exp/train.py` (a map-style dataset read one sample at a time by a DataLoader, BCELoss on "
            "sigmoid outputs, Adam, clipping at 5, `loss.item()` every step); this side is `benchmarks/speed_child.py` "
            "through the engine with the overrides shown. Its LSTM has a BatchNorm before the head, ours none; "
            "otherwise the sizes match (SCINet: its `hidden_dim` multiplies the 5 features, 12 x 5 = 60 channels).")
    sec.data = {"research_code": research, "throughput": speed, "gemm_flops_per_s": gemm, "slots": res, "threads": pol, "vs_commit": vs}
    sec.seconds = time.perf_counter() - t0
    return sec
