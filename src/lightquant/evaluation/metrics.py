"""Direction metrics from probabilities of "up"."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import f1_score, matthews_corrcoef


def classification_metrics(y_true: np.ndarray, prob_up: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, MCC, F1 of the up class, the class balance of labels and predictions, and
    the baseline any accuracy must beat.

    The balance is reported because a model that always says "up" scores the up-share
    as accuracy; MCC is 0 for it, which is why MCC is the headline metric.
    ``majority_accuracy`` is the accuracy of always predicting this split's majority class
    (known only in hindsight, so a demanding bar), and ``p_vs_majority`` the one-sided exact
    binomial p-value of the model's correct count if each sample were right with that
    probability: below 0.05, the accuracy beats the majority class at the 95 % level (treating
    samples as independent, which stock-days of one date are not quite).
    """
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(prob_up) >= threshold).astype(int)
    if len(y) == 0:
        return {"n": 0}
    correct = int((y == pred).sum())
    majority = max(float(y.mean()), 1.0 - float(y.mean()))
    return {
        "accuracy": correct / len(y),
        "mcc": float(matthews_corrcoef(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "up_share": float(y.mean()),
        "pred_up_share": float(pred.mean()),
        "majority_accuracy": majority,
        "p_vs_majority": float(binomtest(correct, len(y), majority, alternative="greater").pvalue),
        "n": int(len(y)),
    }
