"""Direction metrics from probabilities of "up", and a split's metrics from a model's logits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import confusion_matrix, f1_score, matthews_corrcoef, roc_auc_score

from lightquant.losses import Criterion, bce, masked_loss

if TYPE_CHECKING:
    from lightquant.data.market import MarketData


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
    from scipy.stats import binomtest  # scipy.stats takes a second to import: only when a split is scored

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


def ranking_metrics(prob_up: np.ndarray, ret: np.ndarray, date: np.ndarray) -> dict[str, float]:
    """What a quant ranks signals by: per date, the Pearson (IC) and Spearman (Rank IC) correlation
    between ``prob_up`` and the realised next-day return across that date's stocks; their mean, std
    and ICIR (mean / std) over dates. Dates with fewer than 2 stocks or a constant score or return
    have no correlation and are left out. Also ROC AUC of ``prob_up`` against the up labels is
    ICIR is ``ic_ir`` (and ``rank_ic_ir``)."""
    df = pd.DataFrame({"p": np.asarray(prob_up, dtype=np.float64), "r": np.asarray(ret, dtype=np.float64),
                       "d": np.asarray(date)})
    g = df.groupby("d")
    df["pr"], df["rr"] = g["p"].rank(), g["r"].rank()

    def per_date(x: str, y: str) -> pd.Series:  # vectorised Pearson per date from grouped sums
        dx = df[x] - g[x].transform("mean")
        dy = df[y] - g[y].transform("mean")
        tmp = pd.DataFrame({"d": df["d"], "xy": dx * dy, "xx": dx * dx, "yy": dy * dy}).groupby("d").sum()
        den = np.sqrt(tmp["xx"] * tmp["yy"])
        return (tmp["xy"] / den)[(den > 1e-12) & (g.size() >= 2)]

    out = {}
    for name, (x, y) in {"ic": ("p", "r"), "rank_ic": ("pr", "rr")}.items():
        s = per_date(x, y)
        mean = float(s.mean()) if len(s) else float("nan")
        std = float(s.std(ddof=1)) if len(s) > 1 else float("nan")
        out.update({name: mean, f"{name}_std": std, f"{name}_ir": mean / std if std and std > 0 else float("nan"),
                    f"{name}_dates": int(len(s))})
    return out


def auc_and_confusion(y_true: np.ndarray, prob_up: np.ndarray, threshold: float = 0.5) -> dict:
    """ROC AUC (NaN with one class) and the confusion matrix [[tn, fp], [fn, tp]] (rows: true down, up)."""
    y = np.asarray(y_true).astype(int)
    pred = (np.asarray(prob_up) >= threshold).astype(int)
    auc = float(roc_auc_score(y, prob_up)) if 0 < y.sum() < len(y) else float("nan")
    return {"auc": auc, "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist()}


def split_metrics(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, data: "MarketData", split: str,
                  criterion: Criterion = bce, per_horizon: bool = False) -> dict:
    """A split's metrics from the model's logits, labels and label mask (as ``Trainer.predict`` gives
    them): the loss (``criterion``, the training objective, over every real label) and the headline
    metrics of the t+1 movement of every stock-day (horizon 1 of a multi-horizon model):
    classification metrics and the per-date IC / Rank IC of ``prob_up`` against the realised return.
    ``per_horizon`` (the final evaluation) adds ROC AUC, the confusion matrix and
    ``horizons: {"t+h": metrics}``."""
    if not mask.any():
        return {"loss": float("nan"), "accuracy": float("nan"), "mcc": float("nan"), "f1": float("nan"), "n": 0}
    out = {"loss": float(masked_loss(criterion, logits, y, mask))}
    s = data.splits[split]
    ret, date = s.ret.cpu(), data.row_day[s.end_row].cpu()  # date: (N,) or (N, S) like the items
    if data.horizons > 1:  # (N, H): the headline is t+1
        yy, pp, rr, dd = y[:, 0], torch.sigmoid(logits[:, 0]), ret[:, 0], date
    else:  # (N,) or date items (N, S): every real stock-day
        yy, pp, rr, dd = y[mask], torch.sigmoid(logits[mask]), ret[mask], date[mask]
    out.update(classification_metrics(yy.numpy(), pp.numpy()))
    out.update(ranking_metrics(pp.numpy(), rr.numpy(), dd.numpy()))
    if per_horizon:
        out.update(auc_and_confusion(yy.numpy(), pp.numpy()))
        if data.horizons > 1:
            out["horizons"] = {
                f"t+{h + 1}": classification_metrics(y[mask[:, h], h].numpy(), torch.sigmoid(logits[mask[:, h], h]).numpy())
                for h in range(y.shape[1])
            }
    return out
