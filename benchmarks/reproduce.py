"""Section 7's reproducibility report: every paper recipe of ``conf/experiment/paper/`` over seeds,
against its published figure and the baselines of the same protocol.

The recipes are data: each ``conf/experiment/paper/<name>.yaml`` with a ``recipe:`` block (its
published figure and source) is one row; ``recipe.warm_start_from: paper/<other>`` adds a second
row that starts every seed from that recipe's run of the same seed (``trainer.init_from``: the
Adv-ALSTM authors' two-stage run); ``recipe.variants: {label: [overrides]}`` adds one row per label,
the recipe with those overrides (a sensitivity run beside the recipe, not a choice between them).
Files whose name starts with ``_`` are shared parts, not recipes.

Baselines under each protocol, computed here in one process: the majority class of the training
split applied to the test split, the test split's own all-up rate, and a logistic regression on
the window's past adjusted-close returns (scikit-learn, fitted on the training split).

    python -m benchmarks.reproduce --seeds 1,2,3,4,5 --jobs 2
    python -m benchmarks.reproduce --recipes alstm_acl18,adv_alstm_acl18 --seeds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from omegaconf import OmegaConf

from benchmarks.common import CONF, PLAN, RESULTS, Section, Settings, Table, fmt, mean_std
from benchmarks.quality import data_root, run_one

RECIPES = CONF / "experiment" / "paper"


def recipes() -> dict[str, dict]:
    """name -> its ``recipe:`` block, for every recipe file."""
    out = {}
    for f in sorted(RECIPES.glob("*.yaml")):
        if f.name.startswith("_"):
            continue
        meta = OmegaConf.to_container(OmegaConf.load(f)).get("recipe")
        if meta is None:
            raise ValueError(f"{f}: a paper recipe needs a `recipe:` block (published figure and source)")
        out[f.stem] = meta
    return out


def _protocol(name: str) -> str:
    """The dataset a recipe runs on, from its composed config."""
    from benchmarks.common import compose

    return str(compose([f"experiment=paper/{name}"]).dataset.name)


def run_recipes(names: Sequence[str], seeds: Sequence[int], out: Path, threads: int, jobs: int = 1,
                verbose: bool = True) -> list[dict]:
    """Every (recipe, seed) run, then the warm-started ones (they need their first stage)."""
    meta = recipes()
    unknown = [n for n in names if n not in meta]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; conf/experiment/paper/ has {sorted(meta)}")
    root = data_root()
    base = out / "reproduce"

    def one(item: tuple[str, int, str | None, str | None]) -> dict:
        name, seed, warm, variant = item
        tag = "+warm" if warm else f"+{_slug(variant)}" if variant else ""
        run_dir = base / f"{name}{tag}" / f"seed{seed}"
        ov = [f"experiment=paper/{name}", f"seed={seed}", f"trainer.num_threads={threads}"]
        if warm:
            ov.append(f"trainer.init_from={base / warm.split('/')[-1] / f'seed{seed}'}")
        if variant:
            ov += list(meta[name]["variants"][variant])
        r = run_one(ov, run_dir, out, threads, root)
        r.update(recipe=name, seed=seed, warm_start=warm, variant=variant, run_dir=str(run_dir))
        if verbose:
            status = "FAILED" if r["failed"] else f"acc {r['test_accuracy']:.4f} mcc {r['test_mcc']:+.4f}"
            print(f"[reproduce] {_label(name, warm, variant)} seed {seed}: {status} ({r['wall_s']:.0f} s)", flush=True)
        return r

    plan = [(n, s, None, None) for n in names for s in seeds]
    plan += [(n, s, None, v) for n in names for v in meta[n].get("variants", {}) for s in seeds]
    warm = [(n, s, meta[n]["warm_start_from"], None) for n in names if meta[n].get("warm_start_from") for s in seeds]
    needed = {w.split("/")[-1] for _, _, w, _ in warm} - set(names)
    plan += [(n, s, None, None) for n in sorted(needed) for s in seeds]  # first stages not asked for
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        runs = list(pool.map(one, plan))
        runs += list(pool.map(one, warm))
    return [r for r in runs if r["recipe"] in names or r["warm_start"]]


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


def _label(name: str, warm: str | None, variant: str | None) -> str:
    return name + (f" (from {warm})" if warm else f" ({variant})" if variant else "")


def _groups(runs: list[dict]) -> list[tuple[str, str | None, str | None]]:
    """(recipe, warm start, variant) of every row, in run order."""
    return list(dict.fromkeys((r["recipe"], r["warm_start"], r.get("variant")) for r in runs))


def _test_metrics(run: dict) -> dict:
    """The run's own metrics.json test block (fields the reuse record does not keep)."""
    f = Path(run["run_dir"]) / "metrics.json"
    return json.loads(f.read_text())["test"] if f.is_file() else {}


def constant_seeds(runs: list[dict]) -> int:
    """Runs whose selected model predicts one class for every test sample."""
    return sum(_test_metrics(r).get("pred_up_share") in (0.0, 1.0) for r in runs if not r["failed"])


def trained_at(out: Path, runs: list[dict]) -> list[str]:
    """The commits the runs were trained at, from the leaderboards they appended to."""
    import pandas as pd

    # by the run dir below the results folder: a run trained from another checkout whose results
    # folder was this one (a link) is recorded under that checkout's path
    tails = {Path(r["run_dir"]).resolve().relative_to(out.resolve()).as_posix() for r in runs}
    commits: set[str] = set()
    for board in (out / "result").glob("*/leaderboard.csv"):
        df = pd.read_csv(board)
        mine = df["output_dir"].astype(str).map(lambda d: any(d.endswith("/" + t) for t in tails))
        commits |= set(df.loc[mine, "git_commit"].astype(str))
    return sorted(commits)


def baselines(dataset: str, cache_dir: Path) -> dict[str, dict]:
    """Majority class (train's, on test), the test all-up rate, and logistic regression on past returns."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from benchmarks.common import build
    from lightquant.evaluation.metrics import classification_metrics

    root = data_root()
    _, data, _ = build([f"dataset={dataset}", f"paths.data_dir={root}", "dataset.features=[adj_close]",
                        f"model={PLAN['price_model']}"], cache_dir)

    def xy(split: str):
        s = data.splits[split]
        rows = s.end_row[:, None] + data._offsets  # (N, T) the window's days
        return data.features[rows][..., 0].numpy(), s.y.numpy()

    (xtr, ytr), (xte, yte) = xy("train"), xy("test")
    majority = float(ytr.mean() >= 0.5)
    lr = LogisticRegression(max_iter=1000).fit(xtr, ytr)
    return {
        "majority class (train's)": classification_metrics(yte, np.full(len(yte), majority)),
        "logistic regression, past returns": classification_metrics(yte, lr.predict_proba(xte)[:, 1]),
        "_test": {"n": len(yte), "up_share": float(yte.mean()), "window": data.look_back_window},
    }


def recipe_table(runs: list[dict], protocols: dict[str, str]) -> Table:
    meta = recipes()
    rows = []
    for key in _groups(runs):
        name, warm, variant = key
        rs = [r for r in runs if (r["recipe"], r["warm_start"], r.get("variant")) == key]
        ok = [r for r in rs if not r["failed"]]
        acc, mcc = [r["test_accuracy"] for r in ok], [r["test_mcc"] for r in ok]
        pub = meta[name]["published"]
        extra = f" trainer.init_from=<{warm} run>" if warm else "".join(f" {o}" for o in meta[name]["variants"][variant]) if variant else ""
        cmd = f"`python train.py experiment=paper/{name} seed=<s>{extra}`"
        beats = sum(r.get("test_p_vs_majority", 1.0) < 0.05 for r in ok)
        rows.append([
            _label(name, warm, variant), protocols[name], cmd, f"{len(ok)}/{len(rs)}",
            mean_std(acc, 100), mean_std(mcc, 1, 3), f"{pub['accuracy']:.2f} / {pub['mcc']:.3f}",
            f"{statistics.mean(acc) * 100 - pub['accuracy']:+.2f} / {statistics.mean(mcc) - pub['mcc']:+.3f}" if ok else "—",
            "yes" if ok and statistics.mean(acc) * 100 >= pub["accuracy"] and statistics.mean(mcc) >= pub["mcc"] else "no",
            mean_std([r["test_majority_accuracy"] for r in ok], 100), f"{beats}/{len(ok)}", f"{constant_seeds(ok)}/{len(ok)}",
            ", ".join(str(r["best_epoch"]) for r in ok),
        ])
    headers = ["recipe", "protocol (dataset=)", "command", "seeds ok", "test acc % (mean ± std)", "test MCC",
               "published acc % / MCC", "Δ acc / Δ MCC", "reaches published", "all-up / majority acc % of the test split",
               "seeds beating the majority class (binomial p < 0.05)", "seeds predicting one class only",
               "selected epoch per seed"]
    return Table("Paper recipes on their papers' protocols", headers, rows)


def baseline_table(per_protocol: dict[str, dict[str, dict]]) -> Table:
    rows = []
    for protocol, b in per_protocol.items():
        t = b["_test"]
        rows.append([protocol, "all up (the test split's up share)", f"{t['up_share'] * 100:.2f}", "0.000", "—", t["n"]])
        for name, m in b.items():
            if name.startswith("_"):
                continue
            rows.append([protocol, name, f"{m['accuracy'] * 100:.2f}", f"{m['mcc']:.3f}", fmt(m["p_vs_majority"], 3), m["n"]])
    headers = ["protocol (dataset=)", "baseline", "test acc %", "test MCC", "binomial p vs majority", "test samples"]
    return Table("Baselines under each protocol (deterministic: no seeds)", headers, rows)


DESCRIPTION = (
    "Each paper's own recipe on the protocol its published figure was measured on, one "
    "`conf/experiment/paper/<name>.yaml` per paper (its comment cites the file or table it follows), over seeds "
    "1-5: mean ± sample std of the test figure at the epoch the paper's rule selects (Adv-ALSTM's code: best "
    "validation accuracy of 150 epochs; stocknet-code and PEN: the last epoch; HAN's re-implementation: best "
    "validation loss; DTML: best validation accuracy). Two protocols: `dataset=acl18` (the standard one: 20,315 / "
    "2,555 / 3,720 samples with the 11 Adv-ALSTM features, test 51.3 % up) and `dataset=acl18_stocknet` "
    "(stocknet-code's samples: every lag step needs a tweet, 4,985 / 650 / 1,008, test 57.5 % up). Every row "
    "stands beside the majority-class accuracy of its own test split, and counts the seeds whose accuracy beats "
    "it in a one-sided exact binomial test (p < 0.05, stock-days treated as independent). A row with a label in "
    "parentheses reruns a recipe with the settings its command shows (a warm start, or the authors' batch order: "
    "trainer.shuffle=repeat), a sensitivity run beside the recipe, not a replacement chosen on test. The news recipes read "
    "words (`encoder=words`) as their papers, from word2vec vectors trained on the training tweets in place of "
    "the papers' GloVe-Twitter ones."
)


def section(s: Settings) -> Section:
    """Smoke: the recipes composed and listed, nothing trained. Quick: seed 1. Full: seeds 1-5."""
    t0 = time.perf_counter()
    sec = Section(9, "Reproducibility: the papers' recipes on the papers' protocols", DESCRIPTION)
    names = list(recipes())
    protocols = {n: _protocol(n) for n in names}
    if s.mode == "smoke":
        meta = recipes()
        sec.tables.append(Table("SMOKE: the recipes (composed, not trained)",
                                ["recipe", "protocol (dataset=)", "published acc % / MCC", "source"],
                                [[n, protocols[n], f"{meta[n]['published']['accuracy']:.2f} / "
                                  f"{meta[n]['published']['mcc']:.3f}", meta[n]["source"]] for n in names]))
        sec.seconds = time.perf_counter() - t0
        return sec
    seeds = s.quality_seeds or s.pick(None, [1], [1, 2, 3, 4, 5])
    runs = run_recipes(names, seeds, s.out_dir, s.threads, s.jobs)
    t = recipe_table(runs, protocols)
    t.caption += f" — {len(seeds)} seed(s) ({', '.join(map(str, seeds))})"
    sec.tables.append(t)
    per = {d: baselines(d, s.out_dir / "cache") for d in dict.fromkeys(protocols.values())}
    sec.tables.append(baseline_table(per))
    meta = recipes()
    for key in _groups(runs):
        ok = [r for r in runs if (r["recipe"], r["warm_start"], r.get("variant")) == key and not r["failed"]]
        if not ok:
            continue
        name, warm, variant = key
        acc = statistics.mean(r["test_accuracy"] for r in ok) * 100
        mcc = statistics.mean(r["test_mcc"] for r in ok)
        pub = meta[name]["published"]
        allup = statistics.mean(_test_metrics(r).get("up_share", float("nan")) for r in ok) * 100
        verdict = ("reaches it" if acc >= pub["accuracy"] and mcc >= pub["mcc"] else
                   f"falls short by {pub['accuracy'] - acc:.2f} accuracy points and {pub['mcc'] - mcc:.3f} MCC"
                   if acc < pub["accuracy"] and mcc < pub["mcc"] else
                   f"differs by {acc - pub['accuracy']:+.2f} accuracy points and {mcc - pub['mcc']:+.3f} MCC")
        sec.notes.append(
            f"{_label(name, warm, variant)}: {acc:.2f} % / MCC {mcc:.3f} over {len(ok)} "
            f"seeds against the published {pub['accuracy']:.2f} / {pub['mcc']:.3f}: {verdict}; always predicting "
            f"\"up\" scores {allup:.2f} % on this test split, and {constant_seeds(ok)} of {len(ok)} seeds selected a "
            "model that predicts one class only.")
    commits = trained_at(s.out_dir, runs)
    if commits:
        sec.notes.append(f"Trained at commit(s) {', '.join(commits)} (`git_commit` of their leaderboard rows; reused "
                         "runs keep the commit they were trained at).")
    sec.notes.append(f"Runs: `python -m benchmarks.reproduce --seeds {','.join(map(str, seeds))} --jobs 2` "
                     "(the same runs; `benchmarks/results/reproduce/<recipe>/seed<s>/`, reused when rerun).")
    sec.data = {"runs": runs, "baselines": per}
    sec.seconds = time.perf_counter() - t0
    return sec


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipes", default=",".join(recipes()))
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-baselines", action="store_true")
    a = p.parse_args(argv)
    from benchmarks.document import render_table

    t0 = time.perf_counter()
    names = a.recipes.split(",")
    runs = run_recipes(names, [int(s) for s in a.seeds.split(",")], a.out, a.threads, a.jobs)
    protocols = {n: _protocol(n) for n in names}
    print(render_table(recipe_table(runs, protocols)))
    if not a.no_baselines:
        per = {d: baselines(d, a.out / "cache") for d in dict.fromkeys(protocols.values())}
        print(render_table(baseline_table(per)))
    print(f"{(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
