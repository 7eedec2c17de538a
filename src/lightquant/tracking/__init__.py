"""Experiment tracking (SwanLab) and per-run plots; everything here writes on rank 0 only."""

from lightquant.tracking.curves import CurvesPlot, plot_history
from lightquant.tracking.rank import global_rank, is_rank_zero
from lightquant.tracking.swanlab_tracker import SwanLabTracker, Tracker, start_tracker

__all__ = ["CurvesPlot", "SwanLabTracker", "Tracker", "global_rank", "is_rank_zero", "plot_history", "start_tracker"]
