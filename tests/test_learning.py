"""Models learn a planted signal and find nothing in pure noise."""

from __future__ import annotations

import pytest

from lightquant.training import train

# 20 stocks x 3 years; with price_signal=0.5 the Bayes ceiling is ~0.75 accuracy.
MARKET = [
    "dataset.source.n_stocks=20",
    "dataset.source.end=2023-12-29",
    "dataset.splits.train_end=2023-06-30",
    "dataset.splits.val_end=2023-09-29",
    "dataset.source.news_signal=0.0",
    "trainer.epochs=6",
    "trainer.lr=3e-3",
    "trainer.device=cpu",
    "model.hidden_size=32",
    "model.layers=1",
    "model.dropout=0.0",
]


@pytest.mark.parametrize("model", ["lstm", "bilstm", "alstm", "adv_lstm"])
def test_learns_a_strong_price_signal(cfg_factory, model):
    extra = ["model.attention_size=32"] if model in ("alstm", "adv_lstm") else []
    m = train(cfg_factory([*MARKET, f"model={model}", *extra, "dataset.source.price_signal=0.5"], tiny=False))
    assert m["test"]["accuracy"] >= 0.65, m["test"]
    assert m["test"]["mcc"] >= 0.3, m["test"]


def test_finds_nothing_in_pure_noise(cfg_factory):
    m = train(cfg_factory([*MARKET, "dataset.source.price_signal=0.0"], tiny=False))
    assert abs(m["test"]["accuracy"] - 0.5) < 0.05, m["test"]
    assert abs(m["test"]["mcc"]) < 0.1, m["test"]
