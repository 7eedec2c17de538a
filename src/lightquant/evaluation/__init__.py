"""Evaluation: metrics, predictions, backtests, leaderboards and reports of trained models."""

from lightquant.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
