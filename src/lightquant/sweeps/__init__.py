"""Reports on multirun / sweep dirs: leaderboard, best configuration, seed summary, plots.

Per sweep (one dir of Hydra jobs); the per-dataset leaderboard across all runs is
``lightquant.evaluation``'s.
"""

from lightquant.sweeps.callback import SweepReport
from lightquant.sweeps.report import write_report
from lightquant.sweeps.runs import collect_runs

__all__ = ["SweepReport", "collect_runs", "write_report"]
