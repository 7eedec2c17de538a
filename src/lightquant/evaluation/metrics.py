"""Direction metrics from probabilities of "up"."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def classification_metrics(y_true: np.ndarray, prob_up: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy, MCC, F1 of the up class, and the class balance of labels and predictions.

    The balance is reported because a model that always says "up" scores the up-share
    as accuracy; MCC is 0 for it, which is why MCC is the headline metric.
    """
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(prob_up) >= threshold).astype(int)
    if len(y) == 0:
        return {"n": 0}
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "mcc": float(matthews_corrcoef(y, pred)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "up_share": float(y.mean()),
        "pred_up_share": float(pred.mean()),
        "n": int(len(y)),
    }
