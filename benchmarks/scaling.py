"""Section 5: scaling. Training epoch time and peak memory as the universe (stocks), the
window and the texts per day grow, each point in a fresh process (its own peak RSS, benchmarks/child.py),
with the fitted growth exponent (time ~ x**b: b = 1 is linear).

The memory claim under test: ``MarketData`` keeps one (rows, features) table and a
(rows, K) index into one embedding table, and gathers windows per batch, so memory grows
with stock-days and texts, never with samples x window x texts x dim. The last column gives
the size that product would take if it were materialised, beside what was measured.
"""

from __future__ import annotations

import time

from benchmarks.common import PLAN, Section, Settings, Table, build, child_env, fit_exponent, fmt, run_child

DESCRIPTION = (
    "One training epoch through the engine (`Trainer.train_epoch`, batch 64, default model configs) on "
    "the synthetic market. Universe: {price} on prices, 50 stocks upward. Window: {text} with news (K = 20 "
    "texts kept per stock-day, 1.5 a day on average). Texts: {text} with K texts kept per stock-day and K "
    "a day on average. Each point runs in a fresh process whose data cache was filled beforehand by "
    "another process (so the point measures loading from the cache, features, one epoch). Peak RSS is "
    "the whole process's (imports ~{base} MB included); \"Δ RSS\" subtracts the RSS after the imports; "
    "\"MarketData\" is the size of the dataset's tensors (features table, text embedding table, indexes). "
    "\"materialised\" is what `samples x window x (features + K x dim)` float32 values would take, the "
    "layout the engine avoids. Growth exponents are least-squares slopes in log-log (1 = linear, 0 = flat)."
)


def epoch(overrides: list[str], cache_dir: str, batch: int = 64, prime: bool = False) -> dict:
    """Child: build the data (and model) through lightquant.training, then time one training epoch."""
    from pathlib import Path

    from benchmarks.loops import engine
    from lightquant.engine.device import data_nbytes

    _, data, model = build(overrides, Path(cache_dir))
    if prime:
        return {}
    trainer = engine(model, batch)
    t0 = time.perf_counter()
    trainer.train_epoch(data)
    seconds = time.perf_counter() - t0
    n, T, F = len(data.splits["train"]), data.look_back_window, data.num_features
    K = data.row_news.shape[1] if data.row_news is not None else 0
    E = data.news_size
    return {"epoch_s": seconds, "samples": n, "rows": int(data.row_stock.shape[0]), "texts": len(data.news_text),
            "T": T, "K": K, "E": E, "data_mb": data_nbytes(data) / 2**20,
            "materialised_mb": n * T * (F + K * E) * 4 / 2**20}


def axes(s: Settings) -> list[tuple[str, str, list, callable]]:
    """(axis name, what x is, points, overrides for a point)."""
    from benchmarks.quality import SMOKE_DATA

    price, text = f"model={PLAN['price_model']}", f"model={PLAN['text_model']}"
    if s.mode == "smoke":
        base = SMOKE_DATA
        return [
            ("universe", "stocks", [8], lambda x: [price, *base]),
            ("window", "window T", [5], lambda x: [text, "use_news=true", *base, f"dataset.look_back_window={x}"]),
            ("texts", "texts per stock-day K", [2], lambda x: [text, "use_news=true", *base,
                                                                 f"dataset.max_num_tweets_len={x}",
                                                                 f"dataset.source.news_per_day={x}"]),
        ]
    text_stocks = s.pick(None, 20, 50)
    return [
        ("universe", "stocks", s.pick(None, [50, 300], [50, 300, 1000, 3000]),
         lambda x: [price, f"dataset.source.n_stocks={x}"]),
        # a model with news, so that a materialised layout would grow with the window (x K x E)
        ("window", "window T", [5, 10, 20], lambda x: [text, "use_news=true", f"dataset.source.n_stocks={text_stocks}",
                                                       f"dataset.look_back_window={x}"]),
        # K texts kept per stock-day, with K texts a day on average: the text table and every
        # batch's (B, T, K, E) news tensor both grow with K
        ("texts", "texts per stock-day K", s.pick(None, [5, 10, 20], [5, 10, 20, 40]),
         lambda x: [text, "use_news=true", f"dataset.source.n_stocks={text_stocks}",
                    f"dataset.max_num_tweets_len={x}", f"dataset.source.news_per_day={x}"]),
    ]


def section(s: Settings) -> Section:
    t0 = time.perf_counter()
    cache = s.out_dir / "cache"
    inproc = s.mode == "smoke"
    sec = Section(5, "Scaling: universe, window, texts per day", "")
    results, base_mb = [], float("nan")
    for name, xlabel, points, ov in axes(s):
        rows, pts = [], []
        for x in points:
            kw = {"overrides": ov(x), "cache_dir": str(cache)}
            if not inproc:  # fill the cache in a separate process: the measured one starts warm
                run_child("benchmarks.scaling:epoch", {**kw, "prime": True}, s.threads, env=child_env(s.threads))
            r = run_child("benchmarks.scaling:epoch", kw, s.threads, env=child_env(s.threads), inprocess=inproc)
            r["x"], r["delta_mb"] = x, r["rss_peak_mb"] - r["rss_base_mb"]
            base_mb = r["rss_base_mb"]
            pts.append(r)
            rows.append([x, fmt(r["samples"], 0), fmt(r["texts"], 0), fmt(r["epoch_s"]),
                         fmt(r["samples"] / r["epoch_s"], 0), fmt(r["rss_peak_mb"], 0), fmt(r["delta_mb"], 0),
                         fmt(r["data_mb"], 1), fmt(r["materialised_mb"], 0)])
        xs = [p["x"] for p in pts]
        growth = {"time_vs_x": fit_exponent(xs, [p["epoch_s"] for p in pts]),
                  "mem_vs_x": fit_exponent(xs, [max(p["delta_mb"], 1.0) for p in pts]),
                  "materialised_vs_x": fit_exponent(xs, [max(p["materialised_mb"], 1e-3) for p in pts])}
        caption = f"{name}: x = {xlabel}; fitted growth: epoch time ~ x^{growth['time_vs_x']:.2f}"
        if name == "universe":  # the samples grow with x only here
            growth["time_vs_samples"] = fit_exponent([p["samples"] for p in pts], [p["epoch_s"] for p in pts])
            caption += f" (~ samples^{growth['time_vs_samples']:.2f})"
        caption += (f", Δ RSS ~ x^{growth['mem_vs_x']:.2f} (a materialised layout: "
                    f"~ x^{growth['materialised_vs_x']:.2f})")
        sec.tables.append(Table(caption, [xlabel, "train samples", "texts", "epoch s", "samples/s", "peak RSS MB",
                                          "Δ RSS MB", "MarketData MB", "materialised MB"], rows))
        if len(pts) > 1:
            a, b = pts[0], pts[-1]
            sec.notes.append(
                f"{name}, {xlabel} {a['x']} -> {b['x']} (x{b['samples'] / a['samples']:.1f} samples): epoch time "
                f"x{b['epoch_s'] / a['epoch_s']:.1f}; Δ RSS {fmt(a['delta_mb'], 0)} -> {fmt(b['delta_mb'], 0)} MB "
                f"(MarketData {fmt(a['data_mb'], 1)} -> {fmt(b['data_mb'], 1)} MB), where a materialised layout "
                f"would go {fmt(a['materialised_mb'], 0)} -> {fmt(b['materialised_mb'], 0)} MB.")
        results.append({"axis": name, "points": pts, "growth": growth})
    sec.description = DESCRIPTION.format(base=fmt(base_mb, 0), price=PLAN["price_model"], text=PLAN["text_model"])
    sec.notes.append(
        "What grows and why: MarketData grows with stock-days (universe) and with the number of texts (its "
        "embedding table, texts x dim), never with the window; the rest of Δ RSS is the parsed panel (with "
        "the universe; a price-only run, as on the universe axis, leaves the texts on disk: texts 0), the texts "
        "of a news run, and one batch's activations, which grow with batch x window x K x dim "
        "(window and K axes) but not with the number of samples.")
    if s.mode != "full":
        sec.notes.append("Quick mode stops the universe at 300 stocks and the texts axis at K = 20 on 20 stocks; "
                         "`--full` adds 1000 and 3000 stocks and K = 40 on 50 stocks.")
    if inproc:
        sec.notes.append("Smoke mode measures in-process: memory figures are meaningless there.")
    sec.data = {"results": results}
    sec.seconds = time.perf_counter() - t0
    return sec
