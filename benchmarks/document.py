"""Rendering: sections -> Markdown, and BENCHMARKS.md regenerated between markers.

Each section lives between ``<!-- bench:<key>:begin -->`` and ``<!-- bench:<key>:end -->``;
a rerun replaces exactly that block and leaves everything else in the file (hand-written
text, the "GPU" section of ``make gpu-check``) as it was. The intro block goes right under the
title; a section block not yet in the file goes after the last generated block, so the
generated sections stay together, ahead of hand-written ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import Section, Table, machine_line
from lightquant.markdown import markdown_table

INTRO = """`make bench` (`python -m benchmarks.run`) measures LightQuant's engine against the obvious
alternatives and the models against their published results (hours: the quality section
trains all nine models on ACL18 and CSMD50 with 3 seeds, then the configs tried beyond the defaults); `make bench-quick` (`--quick`) is the
half-hour version on two cores (sections 1-6 shortened, quality reduced to 1 seed x 5 epochs),
and `python -m benchmarks.run --smoke` the structure check the test suite runs
(`tests/test_benchmarks.py`: no timing is ever asserted). The thread count is 1 (`--threads`)
unless a section says otherwise. Each section below is regenerated between its markers by
`python -m benchmarks.run --sections N` and says which command, commit and machine produced it.

How to read the figures: **targets are ratios** of two things measured side by side in the
same process, interleaved (A B, B A, ...) with the median taken, because the machines these
run on are shared and noisy. Absolute times and samples/s are quoted only with the machine
they came from and can move by tens of percent between runs on a busy machine; the ratios
are the result. Memory is the peak resident set size of a fresh process per measurement
(`VmHWM`, the counter behind `resource.getrusage`'s `ru_maxrss`: on Linux a fresh child's
`ru_maxrss` starts at its launcher's peak, see `benchmarks/child.py`).
"""


def render_table(t: Table) -> str:
    return f"**{t.caption}**\n\n" + markdown_table(t.headers, t.rows)


def render_section(sec: Section, info: dict[str, Any], mode: str) -> str:
    out = [f"## {sec.id}. {sec.title}", "", sec.description, ""]
    out.append(f"*Produced by* `{sec.command}` *(mode {mode}) at commit {info['commit']} on {info['date']}; "
               f"machine: {machine_line(info)}; {sec.seconds:.0f} s.*")
    for t in sec.tables:
        out += ["", render_table(t)]
    if sec.targets:
        out += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
        out += [f"| {t.name} | {t.value:.3g} | {t.goal} | {'yes' if t.met else '**no**'} |" for t in sec.targets]
    if sec.notes:
        out += [""] + [f"- {n}" for n in sec.notes]
    return "\n".join(out)


def _markers(key: str) -> tuple[str, str]:
    return f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"


def _block(key: str, body: str) -> str:
    begin, end = _markers(key)
    return f"{begin}\n{body.strip()}\n{end}"


def update_markdown(path: Path, blocks: dict[str, str]) -> None:
    """Replace (or insert) each ``key -> markdown`` block of ``path`` between its markers."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    blocks = {"intro": INTRO, **blocks}
    for key, body in blocks.items():
        begin, end = _markers(key)
        block = _block(key, body)
        pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=block: b, text, count=1)
            continue
        if key == "intro":  # under the title line, or on top
            first, _, rest = text.partition("\n")
            text = f"{first}\n\n{block}\n\n{rest.lstrip()}" if first.startswith("# ") else f"# Benchmarks\n\n{block}\n\n{text}"
            continue
        later = [m.start() for m in re.finditer(r"<!-- bench:section-(\d+):begin -->", text)
                 if key.startswith("section-") and int(m.group(1)) > int(key.split("-")[1])]
        if later:  # keep the numeric order: before the next higher section
            text = text[:later[0]] + block + "\n\n" + text[later[0]:]
        else:  # after the last generated block (the intro's at least)
            pos = [m.end() for m in re.finditer(r"<!-- bench:[\w-]+:end -->", text)][-1]
            text = text[:pos] + "\n\n" + block + text[pos:]
    path.write_text(text.rstrip("\n") + "\n")


def section_key(sec: Section) -> str:
    return f"section-{sec.id}"


def to_json(sections: list[Section], info: dict[str, Any], mode: str) -> str:
    return json.dumps({"machine": info, "mode": mode, "sections": [asdict(s) for s in sections]}, indent=2, default=str)
