"""Section 4: data preparation, cold (parse or generate, features, text encoding, cache
writes) against warm (the same call with the cache in place), each in a fresh process so the
peak RSS is that preparation's own.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager

from benchmarks.common import PLAN, Section, Settings, Table, Target, compose, fmt, median, run_child

GOAL_S = 0.5
DESCRIPTION = (
    "Wall time of `lightquant.builder.build_data` with `use_news=true` (what every run does before training): "
    "**cold** with an empty cache dir (parse the price and news files, or generate the synthetic market; "
    "compute features, labels and splits; fit TF-IDF + SVD on training-period texts and encode every "
    "text; write the panel and embedding caches), **warm** with the caches in place (load the panel and "
    "embeddings, recompute features and splits, which are not cached because they are cheap and depend "
    "on the window and split settings). Each measurement runs in a fresh process; the timer starts after "
    "the imports. Peak RSS is that process's maximum resident set (imports included; the import "
    "baseline is given)."
)


@contextmanager
def _phase_timers(buckets: dict[str, float]):
    """Time the panel load and the text encoding inside the real build_data (features = the rest)."""
    from lightquant import builder
    from lightquant.data import market

    patched = []
    for module, name, key in ((market, "cached_panel", "panel_s"), (builder, "encode_cached", "encode_s")):
        fn = getattr(module, name, None)
        if fn is None:  # the code moved: report the total only
            continue

        def timed(*a, _fn=fn, _key=key, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                buckets[_key] = buckets.get(_key, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)
        patched.append((module, name, fn))
    try:
        yield
    finally:
        for module, name, fn in patched:
            setattr(module, name, fn)


def prepare(overrides: list[str], cache_dir: str) -> dict:
    """Child: build_data once; seconds in total and per phase."""
    from omegaconf import open_dict

    from lightquant.builder import build_data

    cfg = compose([*overrides, "use_news=true"])
    with open_dict(cfg):
        cfg.paths.cache_dir = cache_dir
    buckets: dict[str, float] = {}
    with _phase_timers(buckets):
        t0 = time.perf_counter()
        data = build_data(cfg)
        total = time.perf_counter() - t0
    return {"seconds": total, **buckets, "stocks": len(data.stocks), "rows": int(data.row_stock.shape[0]),
            "texts": len(data.news_text), "samples": sum(len(s) for s in data.splits.values())}


def section(s: Settings) -> Section:
    from benchmarks.quality import data_root, dataset_available
    from lightquant.api import TINY_MARKET

    t0 = time.perf_counter()
    specs = {"synthetic, tiny (smoke)": list(TINY_MARKET)} if s.mode == "smoke" else PLAN["data_prep"]
    root = data_root()
    env_extra = {"LIGHTQUANT_DATA": str(root)} if root else {}
    warm_reps = s.pick(1, 3, 5)
    rows, results, sec = [], [], Section(4, "Data preparation: cold vs warm cache", DESCRIPTION)
    for label, overrides in specs.items():
        if not dataset_available(overrides, root):
            sec.notes.append(f"{label}: data not found, skipped (set LIGHTQUANT_DATA).")
            continue
        cache = s.out_dir / "prep_cache" / overrides[-1].replace("=", "_").replace(".", "_")
        shutil.rmtree(cache, ignore_errors=True)  # cold means cold: nothing cached for this dataset

        def child(_ov=overrides, _cache=cache):
            from benchmarks.common import child_env

            return run_child("benchmarks.data_prep:prepare", {"overrides": _ov, "cache_dir": str(_cache)}, s.threads,
                             env=child_env(s.threads, **env_extra), inprocess=s.mode == "smoke")

        cold = child()
        warm = [child() for _ in range(warm_reps)]
        w = median([r["seconds"] for r in warm])
        wpeak = median([r["rss_peak_mb"] for r in warm])
        breakdown = " / ".join(fmt(cold.get(k, float("nan"))) for k in ("panel_s", "encode_s"))
        feat = cold["seconds"] - cold.get("panel_s", 0) - cold.get("encode_s", 0)
        rows.append([label, cold["stocks"], fmt(cold["rows"], 0), fmt(cold["texts"], 0), fmt(cold["seconds"]),
                     f"{breakdown} / {fmt(feat)}", f"{w:.3f}", fmt(cold["seconds"] / w, 1),
                     fmt(cold["rss_peak_mb"], 0), fmt(wpeak, 0), fmt(cold["rss_base_mb"], 0)])
        results.append({"label": label, "overrides": overrides, "cold": cold, "warm": warm, "warm_s": w})
    sec.tables.append(Table(
        f"build_data with news; warm = median of {warm_reps} fresh processes (seconds on this machine)",
        ["dataset", "stocks", "stock-days", "texts", "cold s", "cold: panel / encode / features s", "warm s",
         "cold / warm", "peak RSS cold MB", "peak RSS warm MB", "RSS after imports MB"], rows))
    scale50 = next((r for r in results if r["label"].startswith(("synthetic, CSMD50", "synthetic, tiny"))), None)
    if scale50:
        sec.targets.append(Target("warm load at CSMD50 scale, s", scale50["warm_s"], f"<= {GOAL_S}",
                                  scale50["warm_s"] <= GOAL_S))
    if s.mode == "smoke":
        sec.notes.append("Smoke mode measures in-process: memory figures are meaningless there.")
    sec.data = {"results": results}
    sec.seconds = time.perf_counter() - t0
    return sec
