"""News: encoders, the news store, alignment (no look-ahead), and use_news wiring."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lightquant.data import build_market_data, load_market_data
from lightquant.data.encoders import TfidfSvdEncoder, TransformerEncoder, encode_cached
from lightquant.data.panel import PRICE_FIELDS, Panel
from lightquant.data.synthetic import SyntheticSource
from lightquant.training import train

FEATURES = ["open", "high", "low", "close", "volume"]
SPLITS = {"train_end": "2021-09-30", "val_end": "2021-11-15"}


@pytest.fixture(scope="module")
def small():
    return load_market_data(SyntheticSource(n_stocks=6, end="2021-12-31"), features=FEATURES,
                            look_back_window=5, splits=SPLITS)


def dated_panel() -> Panel:
    """3 stocks on business days; every calendar day (weekends too) carries texts naming their date."""
    dates = np.array(np.arange("2021-01-04", "2021-04-01", dtype="datetime64[D]"))
    dates = dates[np.is_busday(dates)]
    rng = np.random.default_rng(0)
    close = 10 * np.exp(np.cumsum(rng.normal(0, 0.02, (3, len(dates))), axis=1))
    close[1, 20:23] = np.nan  # a suspension
    prices = {f: close.copy() for f in PRICE_FIELDS}
    prices["high"], prices["low"], prices["volume"] = close * 1.01, close * 0.99, np.full_like(close, 1e6)
    prices["volume"][np.isnan(close)] = np.nan
    days = np.arange("2021-01-01", "2021-04-05", dtype="datetime64[D]")
    stock = np.repeat([0, 1, 2], len(days) * 2)
    date = np.tile(np.repeat(days, 2), 3)
    text = [f"{s} {d} {i % 2}" for i, (s, d) in enumerate(zip(stock, date))]
    return Panel(["a", "b", "c"], dates, prices, stock, date, text)


def date_embeddings(texts: list[str]) -> np.ndarray:
    """Embedding = (days since epoch of the text's date, 1): lets a test read dates back from a batch."""
    return np.array([[np.datetime64(t.split()[1], "D").astype(np.int64), 1.0] for t in texts], dtype=np.float32)


def test_no_text_dated_after_t_reaches_a_sample_ending_at_t():
    data = build_market_data(dated_panel(), features=FEATURES, look_back_window=5,
                             splits={"train_end": "2021-02-15", "val_end": "2021-03-01"})
    data = data.with_news(date_embeddings(data.news_text), max_texts=8)
    seen = 0
    for split in ("train", "val", "test"):
        b = data.batch(split, torch.arange(len(data.splits[split])))
        t_day = data.dates[b.date.numpy()].astype(np.int64)  # (B,)
        text_day = b.news[..., 0]  # (B, T, K)
        mask = b.news_mask
        assert (text_day[mask] <= torch.from_numpy(t_day.astype(np.float32))[:, None, None].expand_as(mask)[mask]).all()
        # and each window day holds exactly the texts published since the stock's previous trading day
        seen += int(mask.sum())
    assert seen > 0


def test_weekend_news_reaches_monday_and_k_caps_texts():
    data = build_market_data(dated_panel(), features=FEATURES, look_back_window=2,
                             splits={"train_end": "2021-02-15", "val_end": "2021-03-01"})
    monday = int(np.nonzero(data.dates == np.datetime64("2021-01-11"))[0][0])
    row = int(torch.nonzero((data.row_stock == 0) & (data.row_day == monday))[0])
    # Sat, Sun and Mon texts (2 each) all attach to Monday
    assert sorted({t.split()[1] for t in data.texts(row)}) == ["2021-01-09", "2021-01-10", "2021-01-11"]
    capped = data.with_news(date_embeddings(data.news_text), max_texts=4)
    assert int((capped.row_news[row] > 0).sum()) == 4
    first = capped.news_emb[capped.row_news[row]][:, 0]
    assert first.tolist() == [np.datetime64("2021-01-09").astype(np.int64)] * 2 + [np.datetime64("2021-01-10").astype(np.int64)] * 2


def test_batch_news_equals_the_texts_of_each_window_day(small):
    emb = np.random.default_rng(1).normal(size=(len(small.news_text), 3)).astype(np.float32)
    data = small.with_news(emb, max_texts=3)
    b = data.batch("val", torch.arange(20))
    for i in range(20):
        for j, r in enumerate(range(int(b.row[i]) - 4, int(b.row[i]) + 1)):
            lo, hi = int(small.news_ptr[r]), int(small.news_ptr[r + 1])
            n = min(hi - lo, 3)
            assert int(b.news_mask[i, j].sum()) == n
            assert torch.equal(b.news[i, j, :n], torch.from_numpy(emb[lo : lo + n]))
            assert not b.news[i, j, n:].any()


def test_encoder_is_fitted_on_training_period_texts_only(small):
    train_texts = small.train_texts()
    owner_day = torch.repeat_interleave(small.row_day, small.news_ptr[1:] - small.news_ptr[:-1])
    n_train = int((torch.from_numpy(small.dates <= small.train_end)[owner_day]).sum())
    assert len(train_texts) == n_train < len(small.news_text)
    enc = TfidfSvdEncoder(dim=8).fit(train_texts)
    assert enc._pipeline[0].analyzer == "char"  # Chinese synthetic news: character n-grams
    emb = enc.encode(small.news_text[:10])
    assert emb.shape == (10, 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    en = TfidfSvdEncoder(dim=4).fit(["stock goes up today", "shares fall after report", "stock falls", "up up and away"])
    assert en._pipeline[0].analyzer == "word"


def test_embeddings_are_cached_by_config_and_texts(tmp_path, monkeypatch):
    texts = ["利好消息 股价上涨", "利空 下跌", "公司召开股东大会", "业绩增长"] * 3
    a = encode_cached(TfidfSvdEncoder(dim=2, min_df=1), texts, texts, tmp_path)
    calls = []
    monkeypatch.setattr(TfidfSvdEncoder, "fit", lambda self, t: calls.append(1) or self)
    b = encode_cached(TfidfSvdEncoder(dim=2, min_df=1), texts, texts, tmp_path)
    assert np.array_equal(a, b) and not calls
    with pytest.raises(RuntimeError):  # a different config misses the cache (and fit is mocked out)
        encode_cached(TfidfSvdEncoder(dim=3, min_df=1), texts, texts, tmp_path)
    assert calls == [1]


def _tiny_bert(path):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "stock", "up", "down", "news", "the", "a"]
    (path / "vocab.txt").write_text("\n".join(vocab))
    tok = transformers.BertTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_pretrained_transformer_encoder_from_a_local_folder(tmp_path):
    path = _tiny_bert(tmp_path)
    texts = ["stock up", "stock down news", "the news", "a stock up up up up up up"]
    cls = TransformerEncoder(str(path), dim=16, pooling="cls", batch_size=3).fit(texts).encode(texts)
    mean = TransformerEncoder(str(path), pooling="mean").encode(texts)
    assert cls.shape == mean.shape == (4, 16) and np.isfinite(cls).all()
    assert not np.allclose(cls, mean)
    again = TransformerEncoder(str(path), pooling="cls", batch_size=1).encode(texts)
    assert np.allclose(cls, again, atol=1e-5)  # batching and padding do not change a text's embedding
    short = TransformerEncoder(str(path), pooling="mean", max_num_tokens_len=3).encode(texts)
    assert not np.allclose(short[3], mean[3])  # truncation acts
    with pytest.raises(ValueError, match="encoder.dim=8"):
        TransformerEncoder(str(path), dim=8).encode(texts)


def test_missing_transformers_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"\.\[transformers\]"):
        TransformerEncoder(str(tmp_path)).encode(["x"])


def test_news_models_need_use_news(cfg_factory):
    with pytest.raises(ValueError, match="use_news=true"):
        train(cfg_factory(["model=han"]))


@pytest.mark.parametrize("model", ["lstm", "alstm", "adv_lstm", "bilstm", "han", "stocknet", "pen"])
def test_every_model_trains_with_news(cfg_factory, model):
    m = train(cfg_factory([f"model={model}", "use_news=true", "trainer.epochs=1", "encoder.dim=16",
                           "dataset.max_num_tweets_len=4"]))
    assert m["test"]["n"] > 0 and 0 <= m["test"]["accuracy"] <= 1


@pytest.mark.parametrize("model", ["pen", "han"])
def test_predictions_carry_the_news_behind_them(cfg_factory, tmp_path, model):
    import pandas as pd

    m = train(cfg_factory([f"model={model}", "use_news=true", "trainer.epochs=1", "encoder.dim=16",
                           "dataset.max_num_tweets_len=4"]))
    pred = pd.read_csv(tmp_path / "run" / "predictions_test.csv", keep_default_na=False)
    assert len(pred) == m["test"]["n"]
    assert ((pred.prob_up >= 0.5).astype(int) == pred.pred_up).all()
    assert (pred.pred_up == pred.label).mean() == pytest.approx(m["test"]["accuracy"])
    has = pred.news_1 != ""
    assert has.mean() > 0.5
    # the explaining texts are never dated after the sample's day t
    assert (pd.to_datetime(pred.news_date_1[has]) <= pd.to_datetime(pred.date[has])).all()
    assert (pred.news_weight_1 >= pred.news_weight_2).all()
