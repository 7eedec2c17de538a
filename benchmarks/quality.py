"""Section 7: model quality. Test accuracy and MCC of all nine models on ACL18 (the standard
protocol, conf/dataset/acl18.yaml) and on the CSMD50 sample, mean ± std over seeds, beside
the published ACL18 figures.

Each run is ``python train.py dataset=<d> model=<m> seed=<s> ...`` in its own process (a crash
or a leak in one run cannot touch the next), with tracking off, outputs under
``<out>/quality/`` (never in the data folder), and the project's own cache for parsed data.
A finished run is reused when its overrides are unchanged, so an interrupted multi-hour run
continues where it stopped.

    python -m benchmarks.quality --jobs 2                          # full: 3 seeds, default epochs
    python -m benchmarks.quality --seeds 1 --epochs 5              # the reduced check (in reduced-5ep/)
    python -m benchmarks.quality --datasets acl18 --models lstm,han --seeds 1,2,3,4,5
    python -m benchmarks.quality --variants paper,sweep --jobs 2   # the configs tried beyond the defaults
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.common import (
    ALL_MODELS,
    CONF,
    PLAN,
    RESULTS,
    ROOT,
    Section,
    Settings,
    Table,
    child_env,
    compose,
    fmt,
    mean_std,
    news_overrides,
)
from lightquant.api import TINY_MARKET


@functools.cache
def published() -> dict[str, tuple[float, float]]:
    """model -> the (accuracy %, MCC) its paper published on ACL18, as the paper recipes cite it
    (conf/experiment/paper/<name>.yaml, ``recipe.published``), in the zoo's order. BiLSTM and SCINet
    have no published ACL18 figure."""
    found = {}
    for f in sorted((CONF / "experiment" / "paper").glob("[!_]*.yaml")):
        published = OmegaConf.load(f).recipe.published
        with _COMPOSING:
            model = str(compose([f"experiment=paper/{f.stem}"]).model_name)
        found[model] = (float(published.accuracy), float(published.mcc))
    return {m: found[m] for m in ALL_MODELS if m in found}


#: What was tried beyond the defaults on ACL18 (full mode; ``--variants`` on the command line): one
#: ``conf/experiment/tried/<name>.yaml`` each, whose ``tried:`` block says what it is (``about``) and
#: which models it runs, with the overrides each adds (``models``). Each runs over the defaults' seeds.
TRIED = CONF / "experiment" / "tried"


def variants() -> dict[str, dict]:
    """name -> its ``tried:`` block (about, models), for every file of conf/experiment/tried/."""
    return {f.stem: OmegaConf.to_container(OmegaConf.load(f))["tried"] for f in sorted(TRIED.glob("*.yaml"))}


def variant_overrides(name: str) -> dict[str, list[str]]:
    """model -> the overrides of its runs in variant ``name``."""
    meta = variants()
    if name not in meta:
        raise SystemExit(f"unknown quality variant {name!r}; choose from {sorted(meta)} (conf/experiment/tried/)")
    return {m: [f"experiment=tried/{name}", *ov] for m, ov in meta[name]["models"].items()}


#: the dataset of the papers' figures and of the variants tried beyond the defaults
PUBLISHED_ON = PLAN["quality"]["published_on"]
# The tiny synthetic market of the test suite: the smoke mode.
SMOKE_DATA = [*TINY_MARKET, "model.hidden_size=16"]


def data_root() -> Path | None:
    """The datasets folder (paths.data_dir): $LIGHTQUANT_DATA, else ../shared/datasets (as the tests)."""
    env = os.environ.get("LIGHTQUANT_DATA")
    for p in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "datasets"]:
        if p.is_dir():
            return p.resolve()
    return None


def dataset_available(dataset: str | Sequence[str], root: Path | None) -> bool:
    """Whether the folder of a dataset (a conf/dataset/ name, or the overrides choosing it: its conf's
    ``root`` under ``root``) is there; a generated dataset (no ``root``) always is."""
    overrides = [f"dataset={dataset}"] if isinstance(dataset, str) else list(dataset)
    with _COMPOSING:
        folder = compose([*overrides, f"paths.data_dir={root}"]).dataset.get("root")
    return folder is None or (root is not None and Path(folder).is_dir())


def run_overrides(dataset: str, model: str, seed: int, epochs: int | None, extra: Sequence[str] = ()) -> list[str]:
    """What defines a run's result (the table's config column shows these, minus the seed)."""
    ov = [f"dataset={dataset}", f"model={model}", *news_overrides(model)]
    if epochs is not None:
        ov.append(f"trainer.epochs={epochs}")
    return [*ov, *extra, f"seed={seed}"]


_COMPOSING = threading.Lock()


def config_digest(overrides: Sequence[str]) -> str:
    """A hash of the config ``overrides`` compose to (paths left out, interpolations unresolved): a
    run is reused only while its recipe's files and the conf/ defaults still say the same."""
    import hashlib

    with _COMPOSING:  # Hydra's global state: one compose at a time across the runner threads
        cfg = OmegaConf.to_container(compose(overrides), resolve=False)
    cfg.pop("paths", None)
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_one(overrides: list[str], run_dir: Path, out: Path, threads: int, root: Path | None) -> dict:
    """One train.py run in its own process; reused when ``run_dir`` finished with the same overrides
    composing the same config."""
    record = run_dir / "bench_run.json"
    digest = config_digest(overrides)
    if record.exists():
        done = json.loads(record.read_text())
        if done.get("overrides") == overrides and done.get("config") == digest:
            return done
    run_dir.mkdir(parents=True, exist_ok=True)
    plumbing = [
        f"hydra.run.dir={run_dir}",
        f"paths.result_dir={out / 'result'}",  # the leaderboard too: nothing lands in result/ of the repo
        "export=false",
    ]
    if (CONF / "tracker" / "disabled.yaml").exists():  # the tracker group exists: turn tracking off explicitly
        plumbing.append("tracker=disabled")
    env = child_env(threads, **({"LIGHTQUANT_DATA": str(root)} if root else {}))
    t0 = time.perf_counter()
    with open(run_dir / "stdout.log", "w") as log:
        proc = subprocess.run([sys.executable, "train.py", *overrides, *plumbing], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not (run_dir / "metrics.json").exists():
        tail = (run_dir / "stdout.log").read_text()[-2000:]
        return {"overrides": overrides, "failed": True, "wall_s": wall, "error": tail}
    m = json.loads((run_dir / "metrics.json").read_text())
    done = {
        "overrides": overrides, "config": digest, "failed": False, "wall_s": wall,
        "test_accuracy": m["test"]["accuracy"], "test_mcc": m["test"]["mcc"],
        "val_accuracy": m["val"]["accuracy"], "val_mcc": m["val"]["mcc"],
        "best_epoch": m.get("best_epoch"), "epochs_trained": m.get("epochs_trained"), "test_n": m["test"].get("n"),
        "test_majority_accuracy": m["test"].get("majority_accuracy"), "test_p_vs_majority": m["test"].get("p_vs_majority"),
    }
    record.write_text(json.dumps(done, indent=2))
    return done


def run_all(datasets: Sequence[str], models: Sequence[str], seeds: Sequence[int], epochs: int | None,
            out: Path, threads: int, tag: str, extra: Sequence[str] = (), verbose: bool = True,
            jobs: int = 1, per_model: dict[str, list[str]] | None = None) -> list[dict]:
    """Every (dataset, model, seed) run, ``jobs`` processes at a time; results in a fixed order.
    ``per_model``: more overrides for one model's runs (a variant's)."""
    from concurrent.futures import ThreadPoolExecutor

    root = data_root()
    plan = []
    for d in datasets:
        if not dataset_available(d, root):
            print(f"[quality] {d}: data not found (set LIGHTQUANT_DATA); skipped", flush=True)
            continue
        plan += [(d, m, s) for m in models for s in seeds]

    def one(item):
        d, m, s = item
        run_dir = out / "quality" / tag / d / m / f"seed{s}"
        ov = run_overrides(d, m, s, epochs, [*extra, *(per_model or {}).get(m, [])])
        r = run_one(ov, run_dir, out, threads, root)
        r.update(dataset=d, model=m, seed=s, run_dir=str(run_dir))
        if verbose:
            status = "FAILED" if r["failed"] else f"acc {r['test_accuracy']:.4f} mcc {r['test_mcc']:+.4f}"
            print(f"[quality] {tag} {d} {m} seed {s}: {status} ({r['wall_s']:.0f} s)", flush=True)
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # threads only wait on train.py processes
        return list(pool.map(one, plan))


def run_variant(name: str, seeds: Sequence[int], epochs: int | None, out: Path, threads: int, tag: str,
                extra: Sequence[str] = (), verbose: bool = True, jobs: int = 1) -> list[dict]:
    """One variant (conf/experiment/tried/<name>.yaml) on the published figures' dataset: its models over
    ``seeds``, in ``<tag>-<name>/``."""
    per_model = variant_overrides(name)
    runs = run_all([PUBLISHED_ON], list(per_model), seeds, epochs, out, threads, f"{tag}-{name}", extra,
                   verbose=verbose, jobs=jobs, per_model=per_model)
    return [dict(r, variant=name) for r in runs]


def summarize(runs: list[dict], dataset: str) -> Table:
    rows = []
    for m in dict.fromkeys(r["model"] for r in runs if r["dataset"] == dataset):
        rs = [r for r in runs if r["dataset"] == dataset and r["model"] == m]
        ok = [r for r in rs if not r["failed"]]
        config = " ".join(o for o in rs[0]["overrides"] if not o.startswith(("seed=", "dataset=", "model="))) or "(defaults)"
        acc = [r["test_accuracy"] for r in ok]
        mcc = [r["test_mcc"] for r in ok]
        pub = published().get(m) if dataset == PUBLISHED_ON else None
        gap = f"{statistics.mean(acc) * 100 - pub[0]:+.2f}" if pub and acc else "—"
        rows.append([
            m, f"`{config}`", f"{len(ok)}/{len(rs)}", mean_std(acc, 100), mean_std(mcc, 1, 3),
            f"{pub[0]:.2f}" if pub else "—", f"{pub[1]:.3f}" if pub else "—", gap,
            (f"{statistics.mean([r['epochs_trained'] for r in ok]):.0f} / "
             + ", ".join(str(r["best_epoch"]) for r in ok)) if ok else "—",
            fmt(statistics.mean([r["wall_s"] for r in ok]), 0) if ok else "—",
        ])
    headers = ["model", "config (beyond conf/ defaults)", "seeds ok", "test acc % (mean ± std)", "test MCC",
               "published acc %", "published MCC", "Δ acc vs published", "epochs run / best epoch per seed",
               "s / run"]
    return Table(f"{dataset}", headers, rows)


def chosen_on_validation(defaults: list[dict], tried: list[dict],
                         confirm: Callable[[str, str], list[dict]] | None = None) -> Table:
    """Per model with a published ACL18 figure: the config with the best mean validation MCC over the
    exploration seeds; its test figures over ``confirm(model, config)``'s runs (more seeds of that one
    config, so the reported figure rests on more seeds than the search), else over the same runs."""
    rows = []
    for m, (pa, pm) in published().items():
        groups = {"defaults": [r for r in defaults if r["model"] == m]}
        for v in dict.fromkeys(r["variant"] for r in tried):
            groups[v] = [r for r in tried if r["variant"] == v and r["model"] == m and not r["failed"]]
        groups = {k: g for k, g in groups.items() if g}
        if not groups:
            continue
        name, g = max(groups.items(), key=lambda kv: statistics.mean(r["val_mcc"] for r in kv[1]))
        val = statistics.mean(r["val_mcc"] for r in g)
        if confirm is not None:
            g = confirm(m, name) or g
        acc = statistics.mean(r["test_accuracy"] for r in g) * 100
        mcc = statistics.mean(r["test_mcc"] for r in g)
        rows.append([m, f"{name} (of {', '.join(groups)})", f"{val:.3f}", ", ".join(str(r["seed"]) for r in g),
                     mean_std([r["test_accuracy"] for r in g], 100), mean_std([r["test_mcc"] for r in g], 1, 3),
                     f"{pa:.2f} / {pm:.3f}", f"{acc - pa:+.2f} / {mcc - pm:+.3f}",
                     "yes" if acc >= pa and mcc >= pm else "no"])
    headers = ["model", "config chosen on validation", "val MCC (mean, exploration seeds)", "test seeds",
               "test acc %", "test MCC", "published acc % / MCC", "Δ acc / Δ MCC", "reaches published"]
    return Table(f"{PUBLISHED_ON} — per model, the config chosen on validation, against the published figure", headers, rows)


DESCRIPTION = (
    "The project's own configs on the standard protocol; each paper's own recipe on its own protocol, against "
    "its published figure and the majority class, is section 9 (the reproducibility report). "
    "Test accuracy and MCC per model, mean ± std over seeds (sample std), each run a separate "
    "`python train.py dataset=<d> model=<m> seed=<s>` with the config shown and every other key at its "
    "conf/ default (AdamW lr 3e-4, cosine schedule, up to 100 epochs, early stopping on val/mcc with "
    "patience 15, the best-validation epoch's weights tested; ACL18: 5-day window, Adj Close movement, "
    "up >= +0.55 %, down < -0.5 %, in-between dropped, 20,340 / 2,555 / 3,720 samples). News models "
    "(HAN, StockNet, PEN) read the tweets/news through the default TF-IDF + SVD encoder, not the "
    "pretrained or GloVe text encoders of the papers. Published figures: /work/shared/datasets/README.md "
    "(no published ACL18 figure for BiLSTM or SCINet there). CSMD50 is the 10-stock sample "
    "(publisher's splits), with no published figure to compare."
)
FULL_COMMAND = f"python -m benchmarks.quality --datasets {','.join(PLAN['quality']['datasets'])} --seeds 1,2,3 --jobs 2"


def section(s: Settings) -> Section:
    """Smoke: one tiny synthetic LSTM run. Quick: the reduced check (1 seed, few epochs), clearly
    labelled. Full: all nine models x 3 seeds at the default epochs."""
    t0 = time.perf_counter()
    if s.mode == "smoke":
        datasets, models, seeds, epochs, extra = [PLAN["smoke_dataset"]], list(ALL_MODELS[:1]), [1], 1, SMOKE_DATA
    else:
        datasets, models, extra = PLAN["quality"]["datasets"], list(ALL_MODELS), []
        seeds = s.quality_seeds or s.pick(None, [1], [1, 2, 3])
        epochs = s.quality_epochs if s.quality_epochs is not None else s.pick(None, 5, None)
    full = epochs is None and len(seeds) >= 3
    # runs of other settings live apart, so a 10-epoch run never overwrites a 5-epoch one
    tag = "smoke" if s.mode == "smoke" else ("full" if epochs is None else f"reduced-{epochs}ep")
    runs = run_all(datasets, models, seeds, epochs, s.out_dir, s.threads, tag, extra, verbose=s.mode != "smoke",
                   jobs=s.jobs)
    sec = Section(7, "Quality on ACL18 and the CSMD50 sample", DESCRIPTION)
    seeds_txt = f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
    if s.mode == "smoke":
        label = "SMOKE (tiny synthetic market, 1 epoch: structure only, figures meaningless)"
    elif full:
        label = f"full protocol: {seeds_txt}, default epochs with early stopping"
    else:
        label = (f"REDUCED: {seeds_txt}, " + (f"trainer.epochs={epochs}" if epochs is not None else "default epochs")
                 + " (the full protocol is 3+ seeds, up to 100 epochs with early stopping): indicative only"
                 + (", no std from one seed" if len(seeds) == 1 else ""))
    for d in dict.fromkeys(r["dataset"] for r in runs):
        t = summarize(runs, d)
        t.caption = f"{d} — {label}"
        sec.tables.append(t)
    tried_meta = variants()
    names = s.quality_variants if s.quality_variants is not None else s.pick([], [], list(tried_meta))
    tried = []
    for v in names:
        vr = run_variant(v, seeds, epochs, s.out_dir, s.threads, tag, verbose=s.mode != "smoke", jobs=s.jobs)
        if vr:
            t = summarize(vr, PUBLISHED_ON)
            t.caption = f"{PUBLISHED_ON}, tried beyond the defaults — {v}: {tried_meta[v]['about']}; {seeds_txt}"
            sec.tables.append(t)
            tried += vr
    acl = [r for r in runs if r["dataset"] == PUBLISHED_ON and not r["failed"]]
    short, ok = [], []
    for m in dict.fromkeys(r["model"] for r in acl):
        if m not in published():
            continue
        acc = statistics.mean(r["test_accuracy"] for r in acl if r["model"] == m) * 100
        mcc = statistics.mean(r["test_mcc"] for r in acl if r["model"] == m)
        pa, pm = published()[m]
        (short if acc < pa or mcc < pm else ok).append(f"{m} ({acc - pa:+.2f} acc points, {mcc - pm:+.3f} MCC)")
    if short:
        sec.notes.append("With the defaults, short of the published ACL18 figure in accuracy or MCC: "
                         + "; ".join(short) + ".")
    if ok:
        sec.notes.append("With the defaults, at or above the published figure in both: " + "; ".join(ok) + ".")
    if not runs:
        sec.notes.append("No dataset found: set LIGHTQUANT_DATA to the folder holding the datasets' folders.")
    failed = [r for r in runs if r["failed"]]
    for r in failed:
        sec.notes.append(f"{r['dataset']} {r['model']} seed {r['seed']} FAILED; log in {r['run_dir']}/stdout.log")
    done = [r for r in runs if not r["failed"]]
    if done:
        sec.notes.append(f"{len(done)} runs, {sum(r['wall_s'] for r in done) / 60:.0f} minutes of train.py wall time in "
                         f"all (\"s / run\": per run, with {s.jobs} run(s) at a time sharing this machine; runs finished "
                         "by an earlier invocation are reused and keep their own time).")
    sec.notes.append(f"Full run (3 seeds, default epochs): `{FULL_COMMAND}`; runs land in "
                     "`benchmarks/results/quality/full/<dataset>/<model>/seed<s>/` and are reused when rerun.")
    for v in dict.fromkeys(r["variant"] for r in tried):
        notes = []
        for m in dict.fromkeys(r["model"] for r in tried if r["variant"] == v):
            mine = [r["test_accuracy"] for r in tried if r["variant"] == v and r["model"] == m and not r["failed"]]
            base = [r["test_accuracy"] for r in acl if r["model"] == m]
            if mine and base:
                notes.append(f"{m} {statistics.mean(mine) * 100:.2f} % ({(statistics.mean(mine) - statistics.mean(base)) * 100:+.2f} "
                             "points vs its defaults)")
        if notes:
            sec.notes.append(f"Variant {v} on ACL18, test accuracy: " + "; ".join(notes) + ".")
    if tried:
        confirm_seeds = s.quality_confirm_seeds or s.pick(None, None, [1, 2, 3, 4, 5])

        def confirm(model: str, name: str) -> list[dict]:  # the chosen config over the confirmation seeds
            per_model = None if name == "defaults" else variant_overrides(name)
            rs = run_all([PUBLISHED_ON], [model], confirm_seeds, epochs, s.out_dir, s.threads,
                         tag if name == "defaults" else f"{tag}-{name}", verbose=s.mode != "smoke", jobs=s.jobs,
                         per_model=per_model)
            return [r for r in rs if not r["failed"]]

        sec.tables.append(chosen_on_validation(acl, tried, confirm if confirm_seeds else None))
        sec.notes.append("\"Chosen on validation\": per model, the config (defaults or a variant) with the highest mean "
                         f"validation MCC over the exploration seeds ({seeds_txt}); the test split plays no part in the "
                         "choice, so this is the figure to set beside the published one"
                         + (f". The chosen config is then trained over seeds {', '.join(map(str, confirm_seeds))} "
                            "(the exploration runs reused) and its test figures are the mean ± std of those"
                            if confirm_seeds else "") + ".")
    sec.data = {"runs": runs, "variants": tried, "mode_label": label}
    sec.seconds = time.perf_counter() - t0
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(PLAN["quality"]["datasets"]))
    p.add_argument("--models", default=",".join(ALL_MODELS))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=None, help="trainer.epochs (default: the config's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (OMP_NUM_THREADS)")
    p.add_argument("--jobs", type=int, default=1, help="train.py processes at a time (each with --threads)")
    p.add_argument("--tag", default=None, help="results subfolder (default: full, or reduced-<epochs>ep)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    p.add_argument("--variants", default="", help=f"ACL18 configs tried beyond the defaults: {','.join(variants())}; "
                                                   "only these runs (--models is ignored)")
    p.add_argument("extra", nargs="*", help="more train.py overrides for every run")
    a = p.parse_args(argv)
    seeds = [int(x) for x in a.seeds.split(",")]
    tag = a.tag or ("full" if a.epochs is None else f"reduced-{a.epochs}ep")
    from benchmarks.document import render_table

    for v in [v for v in a.variants.split(",") if v]:
        runs = run_variant(v, seeds, a.epochs, a.out, a.threads, tag, a.extra, jobs=a.jobs)
        print(render_table(summarize(runs, PUBLISHED_ON)))
    if a.variants:
        return
    runs = run_all(a.datasets.split(","), a.models.split(","), seeds, a.epochs, a.out, a.threads, tag, a.extra,
                   jobs=a.jobs)
    for d in dict.fromkeys(r["dataset"] for r in runs):
        print(render_table(summarize(runs, d)))
    if a.json:
        a.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
