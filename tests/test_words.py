"""encoder=words and the word-level message encoders: texts as word ids, vocabulary and word vectors
fitted on the training texts only, and models that learn from the order of a text's words."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lightquant.data import build_market_data
from lightquant.data.encoders import TfidfSvdEncoder, WordIdsEncoder, _state_digest, encode_cached, tokenize
from lightquant.data.synthetic import SyntheticSource, template_polarity
from lightquant.errors import ConfigError
from lightquant.models import HAN, PEN, StockNet
from lightquant.models.layers import WordEncoder
from lightquant.training import build_data, build_model, train

from .test_news_learning import FEATURES, SPLITS, fit

pytest.importorskip("gensim")

EN = ["stock surges after strong earnings", "shares plunge on weak guidance", "the stock surges again",
      "investors cheer strong earnings", "weak guidance hits shares", "analysts expect strong earnings"] * 5


def test_vocabulary_ids_and_vectors_come_from_the_fitted_texts_deterministically():
    enc = WordIdsEncoder(dim=8, min_count=1, epochs=2, max_num_tokens_len=4).fit(EN)
    st = enc.state()
    assert "bankruptcy" not in st["vocabulary"] and st["vocabulary"][:2] == ["earnings", "strong"]  # 15 each: by count, then word
    assert st["vectors"].shape == (len(st["vocabulary"]) + 2, 8) and not st["vectors"][0].any()  # row 0: padding
    ids = enc.encode(["STOCK surges bankruptcy", "a b c d e f", ""])
    index = {w: i + 2 for i, w in enumerate(st["vocabulary"])}
    assert ids.dtype == np.int64 and ids.shape == (3, 4)
    assert ids[0].tolist() == [index["stock"], index["surges"], 1, 0]  # lower-cased; 1 = unknown; 0-padded
    assert ids[1].tolist() == [1, 1, 1, 1] and not ids[2].any()  # the first max_num_tokens_len words
    again = WordIdsEncoder(dim=8, min_count=1, epochs=2, max_num_tokens_len=4).fit(EN)
    assert _state_digest(st) == _state_digest(again.state())
    assert _state_digest(st) != _state_digest(WordIdsEncoder(dim=8, min_count=1, epochs=2, seed=1).fit(EN).state())
    rare = WordIdsEncoder(dim=8, min_count=6, vectors="random").fit(EN)  # words seen 5 times drop out
    assert "strong" in rare.state()["vocabulary"] and "plunge" not in rare.state()["vocabulary"]


def test_a_local_pretrained_file_fills_the_table_and_its_size_is_checked(tmp_path):
    glove = tmp_path / "glove.txt"  # GloVe's format: no header line
    glove.write_text("stock 1 2 3\nstrong -1 0 1\nunrelated 9 9 9\n")
    st = WordIdsEncoder(dim=3, min_count=1, pretrained_file=str(glove)).fit(EN).state()
    table = {w: st["vectors"][i + 2].tolist() for i, w in enumerate(st["vocabulary"])}
    assert table["stock"] == [1, 2, 3] and table["strong"] == [-1, 0, 1] and "unrelated" not in table
    w2v = tmp_path / "vectors.txt"  # word2vec's text format: a "<count> <dim>" header
    w2v.write_text("1 3\nstock 4 5 6\n")
    st = WordIdsEncoder(dim=3, min_count=1, pretrained_file=str(w2v)).fit(EN).state()
    assert st["vectors"][2 + st["vocabulary"].index("stock")].tolist() == [4, 5, 6]
    with pytest.raises(ConfigError, match="encoder.dim=4.*set encoder.dim=3"):
        WordIdsEncoder(dim=4, min_count=1, pretrained_file=str(glove)).fit(EN)
    with pytest.raises(FileNotFoundError, match="encoder.pretrained_file"):
        WordIdsEncoder(pretrained_file=str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("kw, key", [({"vectors": "glove"}, "vectors"), ({"model": "bert"}, "model"),
                                     ({"max_num_tokens_len": 0}, "max_num_tokens_len"), ({"tokenizer": "x"}, "tokenizer")])
def test_invalid_settings_name_the_key(kw, key):
    with pytest.raises(ValueError, match=f"encoder.{key}"):
        WordIdsEncoder(**kw)


def test_ids_are_cached_as_integers_and_the_state_round_trips(tmp_path):
    a = encode_cached(WordIdsEncoder(dim=8, min_count=1, epochs=2), EN, EN[:6], tmp_path)
    enc = WordIdsEncoder(dim=8, min_count=1, epochs=2)
    b = encode_cached(enc, EN, EN[:6], tmp_path)  # from the cache, with its fitted state
    assert a.dtype == b.dtype == np.int64 and np.array_equal(a, b)
    restored = WordIdsEncoder().load_state(enc.state())
    assert np.array_equal(restored.encode(EN[:6]), a)
    with pytest.raises(ValueError, match="encoder=words"):
        WordIdsEncoder().load_state({"kind": "tfidf-svd-1"})


@pytest.mark.parametrize("kind", ["gru", "attention", "mean"])
def test_word_encoder_reads_real_words_only(kind):
    torch.manual_seed(0)
    enc = WordEncoder(vocab_size=10, embedding_size=4, hidden_size=6, kind=kind, attention_size=5).eval()
    ids = torch.tensor([[[3, 4, 0, 0], [5, 0, 0, 0]]])  # (1, 2, L): padded texts
    out = enc(ids)
    assert out.shape == (1, 2, 6)
    longer = torch.cat([ids, torch.zeros(1, 2, 3, dtype=torch.long)], -1)  # more padding: same vectors
    torch.testing.assert_close(enc(longer), out)
    swapped = torch.tensor([[[4, 3, 0, 0], [5, 0, 0, 0]]])
    moved = not torch.allclose(enc(swapped)[0, 0], out[0, 0])
    assert moved == (kind == "gru")  # only the GRU reads word order
    vectors = torch.randn(10, 4)
    enc.load_vectors(vectors)
    assert torch.equal(enc.embedding.weight[1:], vectors[1:]) and not enc.embedding.weight[0].any()
    frozen = WordEncoder(10, 4, 6, kind, 5, freeze=True)
    assert not frozen.embedding.weight.requires_grad
    with pytest.raises(ValueError, match="word_encoder='lstm'"):
        WordEncoder(10, 4, 6, "lstm")
    assert enc(torch.zeros(0, 4, dtype=torch.long)).shape == (0, 6)  # a batch without any text



@pytest.mark.parametrize("kind", ["gru", "attention", "mean"])
def test_a_text_repeated_in_a_batch_gets_the_vector_and_gradient_of_its_copies(kind):
    """Distinct texts are read once and copied to their slots: outputs equal each text read on its
    own, and the embedding gradient equals the one of reading every copy."""
    torch.manual_seed(0)
    enc = WordEncoder(12, 4, 6, kind, 5)
    texts = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0], [3, 4, 5, 0], [7, 8, 9, 10], [6, 0, 0, 0]])
    out = enc(texts.view(1, 5, 4))[0]
    alone = torch.cat([enc(t.view(1, 4)) for t in texts])
    torch.testing.assert_close(out, alone)
    if kind == "gru":  # each direction's state after reading the text's own words, no padding
        for text, vec in zip(texts, out):
            e = enc.embedding(text[text > 0]).unsqueeze(0)
            both = enc.rnn(e)[0][0, -1] + enc.rnn_reverse(e.flip(1))[0][0, -1]
            torch.testing.assert_close(vec, both / 2)
    w = torch.randn(5, 6)
    (out * w).sum().backward()
    batched = enc.embedding.weight.grad.clone()
    enc.zero_grad()
    sum((enc(t.view(1, 4)) * w[i]).sum() for i, t in enumerate(texts)).backward()
    torch.testing.assert_close(batched, enc.embedding.weight.grad)

def test_models_reject_the_wrong_kind_of_texts():
    ids = torch.ones(2, 5, 3, 4, dtype=torch.long)
    vectors = torch.randn(2, 5, 3, 8)
    mask = torch.ones(2, 5, 3, dtype=torch.bool)
    from lightquant.batch import Batch

    def batch(news):
        z = torch.zeros(2, dtype=torch.long)
        return Batch(x=torch.randn(2, 5, 5), y=torch.ones(2), stock=z, date=z, row=z, y_hist=torch.ones(2, 4),
                     market=torch.randn(2, 5, 5), news=news, news_mask=mask)

    word = HAN(news_size=8, hidden_size=8, attention_size=4, mlp_size=4, vocab_size=20)
    assert word(batch(ids)).shape == (2,)
    with pytest.raises(ValueError, match="encoder=words"):
        word(batch(vectors))
    with pytest.raises(ValueError, match="word ids"):
        HAN(news_size=8, hidden_size=8, attention_size=4, mlp_size=4)(batch(ids))


def test_word_dropout_acts_in_training_only():
    enc = WordEncoder(12, 4, 6, "mean", dropout=0.5)
    ids = torch.tensor([[3, 4, 5, 6]] * 4)
    assert not torch.allclose(enc.train()(ids[:1]), enc(ids[:1]))
    torch.testing.assert_close(enc.eval()(ids[:1]), enc(ids[:1]))
    with pytest.raises(ValueError, match="word_dropout"):
        WordEncoder(12, 4, 6, dropout=1.0)


@pytest.mark.parametrize("model", [StockNet, PEN])
@pytest.mark.parametrize("vocab_size", [0, 20])
def test_message_size_sets_the_text_vectors_apart_from_the_hidden_state(model, vocab_size):
    """message_size (the papers' mel_h_size) sizes the message encoder and every layer reading its
    output; the model trains through it with word ids and with text vectors."""
    torch.manual_seed(0)
    from lightquant.batch import Batch

    news = torch.randint(0, 20, (2, 5, 3, 4)) if vocab_size else torch.randn(2, 5, 3, 8)
    z = torch.zeros(2, dtype=torch.long)
    batch = Batch(x=torch.randn(2, 5, 5), y=torch.ones(2), stock=z, date=z, row=z, y_hist=torch.ones(2, 4),
                  market=torch.randn(2, 5, 5), news=news, news_mask=torch.rand(2, 5, 3) < 0.7)
    net = model(5, 8, hidden_size=12, latent_size=4, attention_size=6, vocab_size=vocab_size, message_size=7).train()
    loss = net(batch).sum()
    (loss + net.extra_loss(batch, loss)).backward()
    text = net.words if vocab_size else (net.text_proj if model is StockNet else net.news_proj)
    assert (text.rnn.hidden_size if vocab_size else text.out_features) == 7
    assert all(p.grad is not None for p in text.parameters() if p.requires_grad)
    silent = dataclasses.replace(batch, news_mask=torch.zeros_like(batch.news_mask))  # not one text in the batch
    assert net.eval()(silent).shape == (2,)
    with pytest.raises(ValueError, match="message_size"):
        model(5, 8, message_size=0)


def test_run_wires_word_ids_into_the_news_models(cfg_factory):
    cfg = cfg_factory(["model=stocknet", "use_news=true", "encoder=words", "encoder.dim=8", "encoder.epochs=1",
                       "encoder.max_num_tokens_len=6", "dataset.max_num_tweets_len=3"])
    data = build_data(cfg)
    st = data.text_encoder
    assert data.news_emb.dtype == torch.long and data.news_emb.shape == (len(data.news_text) + 1, 6)  # once per text
    assert data.vocab_size == len(st["vocabulary"]) + 2 and data.news_size == 8
    # fitted on training-period texts only: no word that only later texts use
    train_words = {w for words in tokenize(data.train_texts(), st["tokenizer"]) for w in words}
    assert set(st["vocabulary"]) <= train_words
    b = data.batch("train", torch.arange(4))
    assert b.news.dtype == torch.long and b.news.shape[:3] == b.news_mask.shape and b.news.shape[-1] == 6
    # no look-ahead: the ids of a window's day are its own texts', encoded alone
    enc = WordIdsEncoder().load_state(st)
    rows = data.splits["train"].end_row[:4, None] + data._offsets
    for i, j in [(0, 0), (1, 2), (3, 4)]:
        texts = data.texts(int(rows[i, j]))[:3]
        n = len(texts)
        assert bool(b.news_mask[i, j, :n].all()) and not b.news_mask[i, j, n:].any()
        if n:
            assert torch.equal(b.news[i, j, :n], torch.from_numpy(enc.encode(texts)))
    model = build_model(cfg, data)
    assert cfg.model.vocab_size == data.vocab_size
    torch.testing.assert_close(model.words.embedding.weight[1:], data.word_vectors[1:])  # starts from the vectors
    with pytest.raises(ConfigError, match="model.vocab_size=7"):
        cfg.model.vocab_size = 7
        build_model(cfg, data)
    lstm = cfg_factory(["model=lstm", "use_news=true", "encoder=words", "encoder.dim=8", "encoder.epochs=1"])
    with pytest.raises(ConfigError, match="reads text vectors: use encoder=tfidf"):
        build_model(lstm, build_data(lstm))


@pytest.mark.parametrize("model", ["han", "stocknet", "pen"])
def test_word_level_models_train_export_and_evaluate(cfg_factory, model):
    m = train(cfg_factory([f"model={model}", "use_news=true", "encoder=words", "encoder.dim=8", "encoder.epochs=1",
                           "trainer.epochs=1", "dataset.max_num_tweets_len=3"]))
    assert m["test"]["n"] > 0 and 0 <= m["test"]["accuracy"] <= 1


# --------------------------------------------------------------------------- learning from word order
FILLERS = [f"w{i}" for i in range(30)]


@pytest.fixture(scope="module")
def ordered_panel():
    """The synthetic market (its movement follows the day's news sentiment only), its texts rewritten so
    the sentiment lives in word order alone: "gain <fillers> loss" on good news, "loss <fillers> gain" on
    bad news, fillers only on neutral news. Every polar text holds the same bag of words."""
    panel = SyntheticSource(n_stocks=12, end="2023-06-30", price_signal=0.0, news_signal=0.6, news_per_day=1.0).load()
    rng = np.random.default_rng(0)
    texts = []
    for p in template_polarity(panel.news_text).tolist():
        fill = " ".join(rng.choice(FILLERS, 3))
        texts.append(fill if p == 0 else f"gain {fill} loss" if p > 0 else f"loss {fill} gain")
    return dataclasses.replace(panel, news_text=texts)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["stocknet", "pen"])
def test_word_order_is_learned_by_the_word_gru_and_not_by_a_bag_of_words(ordered_panel, tmp_path, model):
    data = build_market_data(ordered_panel, features=FEATURES, look_back_window=5, splits=SPLITS)

    def net(vocab_size: int = 0):
        cls = StockNet if model == "stocknet" else PEN
        extra = {"kl_anneal_steps": 200} | ({"vocab_size": vocab_size, "word_encoder": "gru"} if vocab_size else {})
        return cls(input_size=5, news_size=16, hidden_size=32, latent_size=8, attention_size=16, dropout=0.0, **extra)

    enc = WordIdsEncoder(dim=16, min_count=1, max_num_tokens_len=8, epochs=2)
    ids = encode_cached(enc, data.train_texts(), data.news_text, tmp_path)
    words = data.with_news(ids, 4, enc.state()["vectors"])
    model_w = net(words.vocab_size)
    [m.load_vectors(words.word_vectors) for m in model_w.modules() if isinstance(m, WordEncoder)]
    bow = TfidfSvdEncoder(dim=16, analyzer="word", ngram_range=(1, 1), min_df=1)  # unigrams: no word order
    vectors = data.with_news(encode_cached(bow, data.train_texts(), data.news_text, tmp_path), 4)
    acc_words, acc_bow = fit(model_w, words, epochs=6), fit(net(), vectors, epochs=6)
    assert acc_words >= 0.6 and acc_words >= acc_bow + 0.08, (acc_words, acc_bow)
    assert acc_bow < 0.57, acc_bow  # the same bag of words on good and bad days: nothing to learn
