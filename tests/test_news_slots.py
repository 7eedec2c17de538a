"""A batch keeps only the text slots some window uses: the news models give the same outputs as on
all max_num_tweets_len slots, since the dropped ones are padding everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchmarks.model_speed import full_width  # the batch as built before unused slots were dropped

from lightquant.data import build_market_data
from lightquant.data.encoders import TfidfSvdEncoder, encode_cached
from lightquant.data.synthetic import SyntheticSource
from lightquant.models import HAN, LSTM, PEN, StockNet

E, K = 8, 20


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    panel = SyntheticSource(n_stocks=6, end="2022-06-30", news_per_day=0.7).load()
    d = build_market_data(panel, features=["open", "high", "low", "close", "volume"], look_back_window=5,
                          splits={"train_end": "2022-01-31", "val_end": "2022-03-31"})
    emb = encode_cached(TfidfSvdEncoder(dim=E), d.train_texts(), d.news_text, tmp_path_factory.mktemp("emb"))
    return d.with_news(emb, max_texts=K)


MODELS = {
    "han": lambda: HAN(news_size=E, hidden_size=8, attention_size=8, mlp_size=8, dropout=0.3),
    "stocknet": lambda: StockNet(input_size=5, news_size=E, hidden_size=8, latent_size=4, attention_size=8, dropout=0.3),
    "pen": lambda: PEN(input_size=5, news_size=E, hidden_size=8, latent_size=4, attention_size=8, dropout=0.3),
    "lstm+news": lambda: LSTM(input_size=5, hidden_size=8, layers=1, dropout=0.0, news_size=E),
}


def test_a_batch_drops_only_slots_that_are_padding_in_every_window(data):
    batch = data.batch("train", torch.arange(256))
    full = full_width(data, batch)
    k = batch.news.shape[-2]
    assert 1 <= k < K and int(full.news_mask.sum()) == int(batch.news_mask.sum())  # every real text kept
    assert not full.news_mask[..., k:].any()
    torch.testing.assert_close(full.news[..., :k, :], batch.news)


@pytest.mark.parametrize("name", list(MODELS))
def test_news_models_give_the_same_outputs_on_the_kept_slots(data, name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    batch = data.batch("train", torch.arange(256))
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(full_width(data, batch)), rtol=1e-5, atol=1e-6)
        if hasattr(model, "explain"):
            w, w_full = model.explain(batch), model.explain(full_width(data, batch))
            k = w.shape[-1]
            torch.testing.assert_close(w, w_full[..., :k], rtol=1e-5, atol=1e-6)
            assert np.allclose(w_full[..., k:].numpy(), 0.0)
