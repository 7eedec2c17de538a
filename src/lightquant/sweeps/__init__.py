"""Reports on multirun / sweep dirs: leaderboard, best configuration, seed summary, plots.

Per sweep (one dir of Hydra jobs); the per-dataset leaderboard across all runs is
``lightquant.evaluation``'s.
"""

from lightquant.sweeps.callback import SweepReport
from lightquant.sweeps.runs import collect_runs
from lightquant.sweeps.summary import write_report

__all__ = ["SweepReport", "collect_runs", "write_report"]
