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

import time
from dataclasses import replace

import torch

from benchmarks.common import (
    ALL_MODELS,
    NEWS_MODELS,
    Section,
    Settings,
    Table,
    build,
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


def throughput(name: str, overrides: list[str], s: Settings, items: int) -> dict:
    _, data, model = build([f"model={name}", *news_overrides(name), *overrides], s.out_dir / "cache")
    if data.layout == "date":  # one item is a date's stocks: as many date items as hold ~``items`` stock-days
        per_item = float(data.splits["train"].mask.sum()) / max(len(data.splits["train"]), 1)
        items = max(1, round(items / per_item))
    data = subset(data, "train", min(items, len(data.splits["train"])))
    n_params = sum(p.numel() for p in model.parameters())
    tr = data.splits["train"]
    samples = int(tr.mask.sum()) if data.layout == "date" else len(tr)  # stock-days, whatever the item layout
    out = {"model": name, "params": n_params, "items": samples}
    for bs in (64, 512):
        trainer = engine(twin(model), bs)
        times = interleaved({"epoch": lambda: trainer.train_epoch(data)}, reps=s.pick(1, 3, 5))["epoch"]
        out[f"samples_per_s_{bs}"] = out["items"] / median(times)
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
    sec.notes.append("Not yet measured here: FLOPs per sample and the share of a measured GEMM rate, the "
                     "research code at equal settings, and the thread-policy table (idle and loaded machine).")
    sec.data = {"throughput": speed, "slots": res}
    sec.seconds = time.perf_counter() - t0
    return sec
