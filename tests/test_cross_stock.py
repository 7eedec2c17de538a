"""DTML's date items really share a date: a signal visible only across stocks on the same
day (stocks 1-3 follow stock 0's previous-day move) is learned by DTML and not by the
single-stock LSTM. SCINet's horizons come out of the real pipeline in metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lightquant.data import build_market_data
from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.engine import seed_everything
from lightquant.evaluation.predictions import predict_frame
from lightquant.models import DTML, LSTM
from lightquant.settings import EarlyStoppingSettings
from lightquant.training import train

from .conftest import cpu_trainer

FEATURES = ["open", "high", "low", "close", "volume"]
SPLITS = {"train_end": "2022-06-30", "val_end": "2022-09-30"}


def follower_panel(n_stocks: int = 6) -> Panel:
    """Random walks, except stocks 1-3: their move on day d+1 has the sign of stock 0's move on day d."""
    dates = pd.bdate_range("2019-01-02", "2022-12-30").values.astype("datetime64[D]")
    rng = np.random.default_rng(0)
    r = rng.normal(0, 0.015, (n_stocks, len(dates)))
    r[1:4, 1:] = np.abs(r[1:4, 1:]) * np.sign(r[0, :-1])
    close = 20 * np.exp(np.cumsum(r, axis=1))
    prev = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    prices = {"close": close, "adj_close": close, "open": prev, "high": np.maximum(prev, close) * 1.002,
              "low": np.minimum(prev, close) * 0.998, "volume": rng.lognormal(12, 0.3, close.shape)}
    assert set(prices) == set(PRICE_FIELDS)
    return Panel([f"s{i}" for i in range(n_stocks)], dates, prices)


def stock1_accuracy(build, data) -> float:
    seed_everything(0)  # before building: the result must not depend on what ran before
    model = build()
    trainer = cpu_trainer(model, torch.optim.AdamW(model.parameters(), lr=1e-3), None, epochs=15,
                          batch_size=16 if data.layout == "date" else 64, seed=0,
                          early_stopping=EarlyStoppingSettings(patience=15), progress=False)
    trainer.fit(data)
    pred = predict_frame(model, data, "test")
    s1 = pred[pred.stock == "s1"]
    assert len(s1) > 50
    return float((s1.pred_up == s1.label).mean())


def test_dtml_learns_a_cross_stock_signal_the_lstm_cannot():
    data = build_market_data(follower_panel(), features=FEATURES, look_back_window=5, splits=SPLITS)
    acc_dtml = stock1_accuracy(
        lambda: DTML(input_size=5, hidden_size=32, attention_size=16, heads=4, dropout=0.1, num_stocks=6), data.by_date()
    )
    acc_lstm = stock1_accuracy(lambda: LSTM(input_size=5, hidden_size=32, layers=1, dropout=0.0), data)
    assert acc_dtml >= 0.8, (acc_dtml, acc_lstm)
    assert acc_lstm <= 0.65, (acc_dtml, acc_lstm)


@pytest.mark.parametrize("model,extra", [("dtml", ["dataset.n_stocks=3"]), ("scinet", ["model.pred_len=3"])])
def test_cross_stock_and_multi_horizon_models_train_end_to_end(cfg_factory, tmp_path, model, extra):
    m = train(cfg_factory([f"model={model}", "trainer.epochs=1", *extra]))
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    pred = pd.read_csv(tmp_path / "run" / "predictions_test.csv")
    assert len(pred) == saved["test"]["n"] == m["test"]["n"] > 0
    assert (pred.pred_up == pred.label).mean() == pytest.approx(saved["test"]["accuracy"])
    if model == "scinet":
        assert list(saved["test"]["horizons"]) == ["t+1", "t+2", "t+3"]
        assert saved["test"]["horizons"]["t+1"]["accuracy"] == saved["test"]["accuracy"]
        assert {"prob_up_t+2", "prob_up_t+3"} <= set(pred.columns)
    else:
        assert pred.groupby("date").stock.nunique().max() <= 8  # every stock-day once
        assert not pred.duplicated(["date", "stock"]).any()


@pytest.mark.parametrize("model", ["dtml", "scinet"])
def test_with_news(cfg_factory, model):
    m = train(cfg_factory([f"model={model}", "use_news=true", "trainer.epochs=1", "encoder.dim=8",
                           "dataset.max_num_tweets_len=3"]))
    assert m["test"]["n"] > 0
