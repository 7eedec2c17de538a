"""Runs one measurement in a fresh process: ``python -m benchmarks.child module:function '<json kwargs>'``.

Prints ``BENCH_RESULT <json>``: the function's dict plus this process's peak resident set size
after the imports (``rss_base_mb``) and at the end (``rss_peak_mb``). A fresh process per
measurement keeps one measurement's allocations out of another's peak.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB.

    On Linux, ``getrusage(RUSAGE_SELF).ru_maxrss`` of a freshly started child is useless here:
    exec folds the high-water mark of the memory it replaces into it, and Python's subprocess
    starts children with vfork, so that is the *launching* process's peak (measured: a child of
    a 500 MB parent reads 510 MB while its own peak is 9 MB). ``VmHWM`` in /proc/self/status is
    the same kernel counter (the mm's high-water RSS that getrusage folds in) for this process's
    own memory only, so it is used where it exists; getrusage elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # macOS: bytes; Linux: KiB


def main() -> None:
    target, kwargs = sys.argv[1], json.loads(sys.argv[2])
    module, _, func = target.partition(":")
    t0 = time.perf_counter()
    import torch  # noqa: F401  (counted in the import baseline: every run pays it)

    import benchmarks.common  # noqa: F401  (puts src/ on sys.path)

    fn = getattr(importlib.import_module(module), func)
    import lightquant.training  # noqa: F401

    base = peak_rss_mb()
    import_s = time.perf_counter() - t0
    out = fn(**kwargs)
    out.update(rss_base_mb=base, rss_peak_mb=peak_rss_mb(), import_s=import_s)
    print("BENCH_RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
