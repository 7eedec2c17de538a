"""Run the benchmarks and regenerate their sections of BENCHMARKS.md.

    python -m benchmarks.run                 # full: everything, hours (the quality section dominates)
    python -m benchmarks.run --quick         # ~30 min on 2 cores: sections 1-6 shortened, section 7 reduced
    python -m benchmarks.run --smoke         # seconds: structure only (the test suite); BENCHMARKS.md untouched
    python -m benchmarks.run --quick --sections 1,2 --out results.json --out fragment.md

Sections: 1 engine overhead, 2 data path, 3 precision, 4 data preparation, 5 scaling,
6 sweep overhead, 7 quality (ACL18, CSMD50), 8 GPU, 9 reproducibility (the papers' recipes), 10 model speed, 11 start-up, 12 text encoders. ``--threads`` (default 1) is set with
torch.set_num_threads here and OMP_NUM_THREADS in every child process, and stated in every
section: one thread keeps side-by-side ratios stable on a shared machine.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

from benchmarks.common import MODES, RESULTS, ROOT, Section, Settings, machine_info, set_threads
from benchmarks.document import render_section, section_key, to_json, update_markdown

SECTIONS = {
    1: "benchmarks.engine_overhead",
    2: "benchmarks.data_path",
    3: "benchmarks.precision",
    4: "benchmarks.data_prep",
    5: "benchmarks.scaling",
    6: "benchmarks.sweep_overhead",
    7: "benchmarks.quality",
    8: "benchmarks.gpu",
    9: "benchmarks.reproduce",
    10: "benchmarks.model_speed",
    11: "benchmarks.startup",
    12: "benchmarks.encoders",
}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="shortened: ~30 min, not hours")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke", help="seconds; structure only")
    p.set_defaults(mode="full")
    p.add_argument("--sections", default=",".join(map(str, SECTIONS)), help="comma-separated, e.g. 1,2,5")
    p.add_argument("--threads", type=int, default=1, help="torch threads, here and in every child (default 1)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default: 2 smoke, 9 quick, 15 full)")
    p.add_argument("--quality-seeds", default=None, help="section 7 seeds, e.g. 1,2,3 (default: quick 1, full 1,2,3)")
    p.add_argument("--quality-epochs", type=int, default=None,
                   help="section 7 trainer.epochs (default: quick 5, full the config's 100 with early stopping)")
    p.add_argument("--quality-variants", default=None,
                   help="section 7 configs tried beyond the defaults on ACL18, e.g. paper,sweep (default: quick "
                        "none, full all; 'none' for none)")
    p.add_argument("--quality-confirm-seeds", default=None,
                   help="section 7: seeds of each model's config chosen on validation, e.g. 1,2,3,4,5 (default: "
                        "full 1-5, quick none)")
    p.add_argument("--jobs", type=int, default=1, help="section 7: train.py processes at a time")
    p.add_argument("--out", action="append", type=Path, default=[],
                   help="also write the results here: *.json (raw figures) or *.md (Markdown fragment); repeatable")
    p.add_argument("--update", type=Path, default=None,
                   help="the BENCHMARKS.md to regenerate between its markers (default: ./BENCHMARKS.md, "
                        "except in --smoke mode)")
    p.add_argument("--no-update", action="store_true", help="leave BENCHMARKS.md alone")
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="caches and run dirs (default benchmarks/results)")
    return p.parse_args(argv)


def run(argv=None) -> list[Section]:
    a = parse(argv)
    assert a.mode in MODES
    ids = [int(x) for x in a.sections.split(",") if x.strip()]
    unknown = [i for i in ids if i not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {unknown}; choose from {sorted(SECTIONS)}")
    logging.basicConfig(level=logging.WARNING)  # the engine's per-epoch INFO lines would drown the progress
    set_threads(a.threads)
    a.results_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(mode=a.mode, threads=a.threads, out_dir=a.results_dir.resolve(), reps=a.reps, jobs=a.jobs,
                        quality_seeds=[int(x) for x in a.quality_seeds.split(",")] if a.quality_seeds else None,
                        quality_epochs=a.quality_epochs,
                        quality_confirm_seeds=[int(x) for x in a.quality_confirm_seeds.split(",")]
                        if a.quality_confirm_seeds else None,
                        quality_variants=None if a.quality_variants is None else
                        [v for v in a.quality_variants.split(",") if v and v != "none"])
    info = machine_info(a.threads)
    command = "python -m benchmarks.run " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    import importlib

    sections = []
    for i in ids:
        print(f"[bench] section {i} ({SECTIONS[i]}, {a.mode}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        sec = importlib.import_module(SECTIONS[i]).section(settings)
        sec.command = command.strip()
        sec.seconds = sec.seconds or time.perf_counter() - t0
        sections.append(sec)
        for t in sec.targets:
            print(f"[bench]   {t.name}: {t.value:.3g} (goal {t.goal}) -> {'met' if t.met else 'NOT met'}",
                  file=sys.stderr, flush=True)
        print(f"[bench] section {i} done in {sec.seconds:.0f} s", file=sys.stderr, flush=True)

    rendered = {section_key(s): render_section(s, info, a.mode) for s in sections}
    for out in a.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".json":
            out.write_text(to_json(sections, info, a.mode))
        else:
            out.write_text("\n\n".join(rendered.values()) + "\n")
    target = None if a.no_update else (a.update or (None if a.mode == "smoke" else ROOT / "BENCHMARKS.md"))
    if target is not None:
        update_markdown(target, rendered)
        print(f"[bench] updated {target}", file=sys.stderr)
    return sections


if __name__ == "__main__":
    run()
