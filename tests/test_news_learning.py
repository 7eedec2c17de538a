"""News is wired right: with the signal only in news, news models beat the price-only LSTM
by a clear margin, and the margin disappears when news is shifted to the wrong days."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lightquant.data import build_market_data
from lightquant.data.encoders import TfidfSvdEncoder, encode_cached
from lightquant.data.synthetic import SyntheticSource
from lightquant.engine import seed_everything
from lightquant.models import HAN, LSTM, PEN, StockNet
from lightquant.settings import EarlyStoppingSettings

from .conftest import cpu_trainer

pytestmark = pytest.mark.slow
FEATURES = ["open", "high", "low", "close", "volume"]
SPLITS = {"train_end": "2022-12-30", "val_end": "2023-03-31"}
E, K, H = 32, 4, 32


def make_models() -> dict:
    return {
        "lstm": lambda: LSTM(input_size=5, hidden_size=H, layers=1, dropout=0.0),
        "han": lambda: HAN(news_size=E, hidden_size=H, attention_size=16, mlp_size=16, dropout=0.0),
        "stocknet": lambda: StockNet(input_size=5, news_size=E, hidden_size=H, latent_size=8, attention_size=16,
                                     dropout=0.0, kl_anneal_steps=200),
        "pen": lambda: PEN(input_size=5, news_size=E, hidden_size=H, latent_size=8, attention_size=16,
                           dropout=0.2, kl_anneal_steps=200),
    }


@pytest.fixture(scope="module")
def panel():
    # the movement is explained by the day's news sentiment only
    return SyntheticSource(n_stocks=12, end="2023-06-30", price_signal=0.0, news_signal=0.6, news_per_day=1.0).load()


def news_data(panel, tmp_path_factory, shift_days: int = 0):
    if shift_days:  # placebo: each text is re-dated to a later day, so it reaches the wrong samples
        panel = dataclasses.replace(panel, news_date=panel.news_date + np.timedelta64(shift_days, "D"))
    data = build_market_data(panel, features=FEATURES, look_back_window=5, splits=SPLITS)
    emb = encode_cached(TfidfSvdEncoder(dim=E), data.train_texts(), data.news_text, tmp_path_factory.mktemp("emb"))
    return data.with_news(emb, max_texts=K)


def fit(model, data, epochs: int = 5) -> float:
    """Test accuracy after a short seeded AdamW run (also the word-order test's, tests/test_words.py)."""
    seed_everything(0)
    trainer = cpu_trainer(model, torch.optim.AdamW(model.parameters(), lr=3e-3), None, epochs=epochs, batch_size=64,
                          seed=0, early_stopping=EarlyStoppingSettings(patience=epochs), progress=False)
    trainer.fit(data)
    return trainer.evaluate(data, "test")["accuracy"]


def test_news_models_beat_price_only_and_placebo_news_does_not_help(panel, tmp_path_factory):
    data = news_data(panel, tmp_path_factory)
    acc = {name: fit(build(), data) for name, build in make_models().items()}
    for name in ("han", "stocknet", "pen"):
        assert acc[name] >= acc["lstm"] + 0.10, acc
    shifted = news_data(panel, tmp_path_factory, shift_days=7)
    placebo = {name: fit(make_models()[name](), shifted) for name in ("han", "stocknet", "pen")}
    for name, a in placebo.items():
        assert a < acc["lstm"] + 0.04, (placebo, acc)
