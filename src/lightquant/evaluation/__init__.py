"""Evaluation: metrics (and, later, predictions, backtests, leaderboards)."""

from lightquant.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
