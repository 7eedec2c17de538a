"""Command line for finished runs (``make leaderboard`` calls the first form).

    python -m lightquant.evaluation.cli leaderboard [--dataset csmd50] [--by model use_news] [--runs]
    python -m lightquant.evaluation.cli backtest outputs/.../predictions_test.csv [--strategy long_short] [--cost-bps 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from lightquant.evaluation import leaderboard
from lightquant.evaluation.backtest import STRATEGIES, MarketRules, backtest, index_returns, save_backtest

SHOWN = ("val_mcc", "test_accuracy", "test_mcc", "bt_total_return", "bt_sharpe", "bt_max_drawdown",
         "bt_information_ratio", "bench_sharpe")


def _print(df: pd.DataFrame, title: str, fmt: str) -> None:
    if fmt == "markdown":
        print(f"\n## {title}\n\n{leaderboard.frame_table(df)}")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), overflow="fold")
    for rec in df.itertuples(index=False):
        table.add_row(*(leaderboard._fmt(v) for v in rec))
    Console().print(table)


def show_leaderboards(result_dir: Path, datasets: Sequence[str] | None, by: Sequence[str],
                      metrics: Sequence[str], runs: bool, fmt: str) -> int:
    if datasets:
        files = [result_dir / d / "leaderboard.csv" for d in datasets]
    else:
        files = sorted(result_dir.glob("*/leaderboard.csv"))
    found = [f for f in files if f.is_file()]
    if not found:
        print(f"No leaderboard under {result_dir} (looked for {[str(f) for f in files] or '*/leaderboard.csv'}); "
              "every finished `python train.py` run appends one row", file=sys.stderr)
        return 1
    for f in found:
        df = leaderboard.read(f)
        _print(leaderboard.summarize(df, by=by, metrics=metrics), f"{f.parent.name}: mean ± std over runs ({f})", fmt)
        if runs:
            _print(df[[c for c in leaderboard.MD_COLUMNS if c in df.columns]], f"{f.parent.name}: runs", fmt)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lightquant.evaluation.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    lb = sub.add_parser("leaderboard", help="print result/<dataset>/leaderboard.csv grouped, mean ± std")
    lb.add_argument("--result-dir", type=Path, default=Path("result"))
    lb.add_argument("--dataset", nargs="*", help="dataset names (default: every result/*/leaderboard.csv)")
    lb.add_argument("--by", nargs="+", default=list(leaderboard.DEFAULT_BY), help="grouping columns")
    lb.add_argument("--metrics", nargs="+", default=list(SHOWN))
    lb.add_argument("--runs", action="store_true", help="also list every run")
    lb.add_argument("--format", choices=("rich", "markdown"), default="rich" if sys.stdout.isatty() else "markdown")
    bt = sub.add_parser("backtest", help="backtest a predictions CSV")
    bt.add_argument("predictions", type=Path)
    bt.add_argument("--strategy", choices=STRATEGIES, default="long_only")
    bt.add_argument("--top-k", type=int, default=5)
    bt.add_argument("--cost-bps", type=float, default=10.0, help="commission and slippage per unit traded")
    bt.add_argument("--hold-days", type=int, default=1, help="a buy may be sold this many days later (1 = T+1)")
    bt.add_argument("--limit-pct", type=float, default=None, help="daily price limit, e.g. 0.10 (A-share main board)")
    bt.add_argument("--stamp-duty-bps", type=float, default=0.0, help="charged on sells only (China: 5)")
    bt.add_argument("--benchmark", type=Path, help="index CSV (Date, Close); default: the equal-weight universe")
    bt.add_argument("--out", type=Path, help="folder for backtest_<split>.json and the PNG (default: beside the CSV)")
    args = parser.parse_args(argv)

    if args.command == "leaderboard":
        return show_leaderboards(args.result_dir, args.dataset, args.by, args.metrics, args.runs, args.format)
    split = args.predictions.stem.removeprefix("predictions_")
    rules = MarketRules(limit_pct=args.limit_pct, stamp_duty_bps=args.stamp_duty_bps)
    result = backtest(pd.read_csv(args.predictions), strategy=args.strategy, top_k=args.top_k, cost_bps=args.cost_bps,
                      hold_days=args.hold_days, rules=rules,
                      benchmark=index_returns(args.benchmark) if args.benchmark else None)
    paths = save_backtest(result, args.out or args.predictions.parent, split)
    print(json.dumps(result.metrics, indent=2))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
