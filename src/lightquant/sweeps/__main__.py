"""``python -m lightquant.sweeps <sweep dir> [--objective val/loss] [--direction minimize]``.

Writes (or rewrites) the report of an existing multirun / sweep dir, e.g. one whose sweep
was interrupted, or a dir that several parallel sweep workers filled.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lightquant.sweeps.summary import DIRECTIONS, write_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lightquant.sweeps", description=__doc__.split("\n\n")[1])
    p.add_argument("sweep_dir", help="a Hydra multirun dir, e.g. multirun/2026-01-01_12-00-00")
    p.add_argument("--objective", default="val/mcc", help="split/metric from metrics.json (default val/mcc)")
    p.add_argument("--direction", choices=DIRECTIONS, help="default: minimize for losses, else maximize")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = write_report(args.sweep_dir, args.objective, args.direction, plots=not args.no_plots)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name:26s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
