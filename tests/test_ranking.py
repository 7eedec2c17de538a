"""Ranking metrics (per-date IC and Rank IC, ICIR), ROC AUC and the confusion matrix, in every
run's metrics.json and usable as the early-stopping monitor and the optimised metric."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from lightquant.choices import FINAL_METRICS
from lightquant.evaluation.metrics import auc_and_confusion, ranking_metrics
from lightquant.training import optimized_metric, train


def test_ic_and_rank_ic_are_per_date_correlations():
    rng = np.random.default_rng(0)
    date = np.repeat(np.arange(20), 30)
    ret = rng.normal(size=600)
    prob = 0.3 * ret + rng.normal(size=600)
    prob[date == 3] = 0.5  # a date with a constant score has no correlation: left out
    m = ranking_metrics(prob, ret, date)
    keep = [d for d in range(20) if d != 3]
    ics = [pearsonr(prob[date == d], ret[date == d])[0] for d in keep]
    rics = [spearmanr(prob[date == d], ret[date == d])[0] for d in keep]
    assert m["ic"] == pytest.approx(np.mean(ics)) and m["rank_ic"] == pytest.approx(np.mean(rics))
    assert m["ic_std"] == pytest.approx(np.std(ics, ddof=1)) and m["ic_ir"] == pytest.approx(m["ic"] / m["ic_std"])
    assert m["ic_dates"] == 19


def test_auc_and_confusion():
    y = np.array([0, 0, 1, 1, 1])
    m = auc_and_confusion(y, np.array([0.1, 0.6, 0.4, 0.8, 0.9]))
    assert m["confusion"] == [[1, 1], [1, 2]]  # [[tn, fp], [fn, tp]]
    assert m["auc"] == pytest.approx(5 / 6)
    assert np.isnan(auc_and_confusion(np.ones(3), np.array([0.2, 0.5, 0.9]))["auc"])


def test_runs_report_and_select_on_rank_ic(cfg_factory):
    m = train(cfg_factory(["trainer.early_stopping.monitor=val/rank_ic", "optimized_metric=val/rank_ic"]))
    for split in ("val", "test"):
        assert {"ic", "ic_std", "ic_ir", "rank_ic", "rank_ic_std", "rank_ic_ir", "auc", "confusion"} <= set(m[split])
        assert set(FINAL_METRICS) <= set(m[split])  # every name the config check accepts is reported
        assert sum(map(sum, m[split]["confusion"])) == m[split]["n"]
    assert m["monitor"] == "val/rank_ic"
    assert optimized_metric(m, "val/rank_ic") == m["val"]["rank_ic"]
