"""Section 12: the news models' text encoders side by side — TF-IDF + SVD vectors (the default),
word2vec vectors pooled per text (``encoder=word2vec``) and word ids read by the models' word-level
message encoders (``encoder=words``) — on ACL18 under both protocols and the CSMD50 sample.

Per (dataset, model, encoder): test accuracy / MCC of the best-validation epoch over seeds (each a
``python train.py`` run at the conf/ defaults plus the encoder), the validation MCC the choice of
encoder rests on, and, in one fresh process per cell, training samples/s of an epoch through the
engine, the size of the news store and the process's peak RSS.

    python -m benchmarks.encoders --seeds 1,2,3 --jobs 2
    python -m benchmarks.encoders --datasets acl18_stocknet --models stocknet --seeds 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import (
    NEWS_MODELS,
    PLAN,
    RESULTS,
    Section,
    Settings,
    Table,
    build,
    child_env,
    fmt,
    interleaved,
    mean_std,
    median,
    run_child,
    subset,
)
from benchmarks.quality import data_root, dataset_available, run_one
from lightquant.api import TINY_MARKET

DATASETS = PLAN["encoders"]["datasets"]
ENCODERS = {"tfidf": ["encoder=tfidf"], "word2vec": ["encoder=word2vec"], "words": ["encoder=words"]}
SMOKE = [*TINY_MARKET, "encoder.dim=8", "model.hidden_size=8"]  # on the smoke dataset


def overrides(dataset: str, model: str, encoder: str, epochs: int | None) -> list[str]:
    ov = [f"dataset={dataset}", f"model={model}", "use_news=true", *ENCODERS[encoder]]
    return ov + ([f"trainer.epochs={epochs}"] if epochs is not None else [])


def epoch_cost(overrides: list[str], items: int, reps: int, cache_dir: str) -> dict:
    """Samples/s of a training epoch over (up to) ``items`` training samples, the news store's size."""
    from benchmarks.loops import engine  # the default AdamW and clipping, as a run builds them

    cfg, data, model = build(overrides, Path(cache_dir))
    data = subset(data, "train", min(items, len(data.splits["train"])))
    trainer = engine(model, int(cfg.dataset.batch_size), epochs=10**6)
    times = interleaved({"epoch": lambda: trainer.train_epoch(data)}, reps=reps)["epoch"]
    n = len(data.splits["train"])
    store = data.news_emb.numel() * data.news_emb.element_size() + data.row_news.numel() * data.row_news.element_size()
    return {"samples": n, "samples_per_s": n / median(times), "news_store_mb": store / 2**20,
            "params": sum(p.numel() for p in model.parameters()), "vocab": data.vocab_size,
            "texts": len(data.news_text)}


def run_quality(datasets: Sequence[str], models: Sequence[str], encoders: Sequence[str], seeds: Sequence[int],
                epochs: int | None, out: Path, threads: int, jobs: int, extra: Sequence[str] = (),
                verbose: bool = True) -> list[dict]:
    root = data_root()
    plan = [(d, m, e, s) for d in datasets for m in models for e in encoders for s in seeds]

    tag = "full" if epochs is None else f"{epochs}ep"  # runs of other settings live apart

    def one(item):
        d, m, e, s = item
        r = run_one([*overrides(d, m, e, epochs), *extra, f"seed={s}"], out / "encoders" / tag / d / m / e / f"seed{s}",
                    out, threads, root)
        r.update(dataset=d, model=m, encoder=e, seed=s)
        if verbose:
            status = "FAILED" if r["failed"] else f"acc {r['test_accuracy']:.4f} mcc {r['test_mcc']:+.4f}"
            print(f"[encoders] {d} {m} {e} seed {s}: {status} ({r['wall_s']:.0f} s)", flush=True)
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, plan))


def run_costs(datasets: Sequence[str], models: Sequence[str], encoders: Sequence[str], items: int, reps: int,
              out: Path, threads: int, extra: Sequence[str] = (), inprocess: bool = False) -> list[dict]:
    """One fresh process per cell, one at a time (a parallel neighbour would slow its epochs); the
    quality runs filled the encoders' caches, so a child loads its texts' encodings from disk."""
    root = data_root()
    env = child_env(threads, **({"LIGHTQUANT_DATA": str(root)} if root else {}))
    costs = []
    for d in datasets:
        for m in models:
            for e in encoders:
                ov = [*overrides(d, m, e, None), *extra]
                r = run_child("benchmarks.encoders:epoch_cost", {"overrides": ov, "items": items, "reps": reps,
                                                                 "cache_dir": str(out / "cache")},
                              threads, env=env, inprocess=inprocess)
                costs.append({**r, "dataset": d, "model": m, "encoder": e})
    return costs


def table(runs: list[dict], costs: list[dict], dataset: str) -> Table:
    rows = []
    for m in dict.fromkeys(r["model"] for r in runs if r["dataset"] == dataset):
        for e in dict.fromkeys(r["encoder"] for r in runs if r["dataset"] == dataset and r["model"] == m):
            rs = [r for r in runs if (r["dataset"], r["model"], r["encoder"]) == (dataset, m, e)]
            ok = [r for r in rs if not r["failed"]]
            c = next((c for c in costs if (c["dataset"], c["model"], c["encoder"]) == (dataset, m, e)), None)
            beats = sum(r.get("test_p_vs_majority", 1.0) < 0.05 for r in ok)
            rows.append([
                m, f"`{' '.join(ENCODERS[e])}`", f"{len(ok)}/{len(rs)}", mean_std([r["val_mcc"] for r in ok], 1, 3),
                mean_std([r["test_accuracy"] for r in ok], 100), mean_std([r["test_mcc"] for r in ok], 1, 3),
                mean_std([r["test_majority_accuracy"] for r in ok], 100), f"{beats}/{len(ok)}",
                ", ".join(str(r["best_epoch"]) for r in ok) or "—",
                fmt(c["samples_per_s"], 0) if c else "—", fmt(c["news_store_mb"], 1) if c else "—",
                fmt(c["rss_peak_mb"], 0) if c else "—", f"{c['params']:,}" if c else "—",
            ])
    headers = ["model", "encoder", "seeds ok", "val MCC (mean ± std)", "test acc % (mean ± std)", "test MCC",
               "majority acc % of the test split", "seeds beating the majority class (binomial p < 0.05)",
               "best epoch per seed", "train samples/s (1 thread)", "news store MB", "peak RSS MB", "parameters"]
    return Table(dataset, headers, rows)


def recommendation(runs: list[dict], dataset: str) -> str:
    """The encoder with the best mean validation MCC over the dataset's models and seeds (test unseen)."""
    scores = {}
    for e in dict.fromkeys(r["encoder"] for r in runs if r["dataset"] == dataset):
        ok = [r["val_mcc"] for r in runs if r["dataset"] == dataset and r["encoder"] == e and not r["failed"]]
        if ok:
            scores[e] = statistics.mean(ok)
    if not scores:
        return f"{dataset}: no successful runs"
    best = max(scores, key=scores.get)
    listed = ", ".join(f"{e} {v:.3f}" for e, v in sorted(scores.items(), key=lambda kv: -kv[1]))
    return f"{dataset}: best mean validation MCC over the news models and seeds: `encoder={best}` ({listed})."


DESCRIPTION = (
    "The three text encoders the news models can read, at the conf/ defaults otherwise (model sizes, AdamW "
    "lr 3e-4, up to 100 epochs with early stopping on val/mcc, patience 15; the best-validation epoch "
    "tested): `encoder=tfidf` (TF-IDF + SVD, 64 dims, the default), `encoder=word2vec` (skip-gram vectors "
    "trained on the training texts, SIF-pooled per text, 64 dims) and `encoder=words` (each text's first 30 "
    "words as ids; the embedding table starts from word2vec vectors trained on the training texts and trains "
    "with the model; StockNet and PEN read each text with a bidirectional GRU over its words, HAN with "
    "attention over them). Every encoder is fitted on training-period texts only. Speed: training "
    "samples/s of an epoch over up to 2,048 training samples through `Trainer.train_epoch`, one thread, in "
    "a fresh process per cell; news store: the per-text table (vectors or ids) plus the stock-day slot "
    "index; peak RSS: that process's, data loading and imports included. The encoder a dataset's row "
    "recommends is chosen on validation MCC, never on test."
)


def section(s: Settings) -> Section:
    """Smoke: conf/benchmarks.yaml's smoke model on the tiny market, one epoch per encoder. Quick: the three datasets, seed 1,
    10 epochs (the word-level runs on ACL18 take most of it). Full: seeds 1-3, default epochs."""
    t0 = time.perf_counter()
    sec = Section(12, "Text encoders for the news models", DESCRIPTION)
    models = NEWS_MODELS
    if s.mode == "smoke":
        datasets, models, seeds, epochs, extra = [PLAN["smoke_dataset"]], [PLAN["encoders"]["smoke_model"]], [1], 1, SMOKE
    else:
        datasets = [d for d in DATASETS if dataset_available(d, data_root())]
        seeds = s.quality_seeds or s.pick(None, [1], [1, 2, 3])
        epochs, extra = (s.quality_epochs if s.quality_epochs is not None else s.pick(None, 10, None)), []
    runs = run_quality(datasets, models, list(ENCODERS), seeds, epochs, s.out_dir, s.threads, s.jobs, extra,
                       verbose=s.mode != "smoke")
    costs = run_costs(datasets, models, list(ENCODERS), s.pick(64, 2048, 2048), s.pick(1, 2, 3), s.out_dir,
                      s.threads, extra, inprocess=s.mode == "smoke")
    label = (f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}), "
             + ("default epochs with early stopping" if epochs is None else f"trainer.epochs={epochs}: indicative only"))
    for d in datasets:
        t = table(runs, costs, d)
        t.caption = f"{d} — {label}"
        sec.tables.append(t)
        sec.notes.append(recommendation(runs, d))
    sec.notes.append(f"Runs: `python -m benchmarks.encoders --seeds {','.join(map(str, seeds))}"
                     + (f" --epochs {epochs}" if epochs is not None else "") + " --jobs 2` "
                     "(`benchmarks/results/encoders/`, reused when rerun).")
    sec.data = {"runs": runs, "costs": costs}
    sec.seconds = time.perf_counter() - t0
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--models", default=",".join(NEWS_MODELS))
    p.add_argument("--encoders", default=",".join(ENCODERS))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    from benchmarks.document import render_table

    datasets, models, encoders = a.datasets.split(","), a.models.split(","), a.encoders.split(",")
    runs = run_quality(datasets, models, encoders, [int(s) for s in a.seeds.split(",")], a.epochs, a.out, a.threads,
                       a.jobs)
    costs = run_costs(datasets, models, encoders, 2048, 3, a.out, a.threads)
    for d in datasets:
        print(render_table(table(runs, costs, d)))
        print(recommendation(runs, d))


if __name__ == "__main__":
    main()
