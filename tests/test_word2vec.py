"""encoder=word2vec: word vectors trained offline on the training texts, pooled per text."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lightquant.data.encoders import Word2VecEncoder, _state_digest, encode_cached
from lightquant.training import train

from .conftest import ROOT

pytest.importorskip("gensim")

EN = ["stock surges after strong earnings", "shares plunge on weak guidance", "the stock surges again",
      "investors cheer strong earnings", "weak guidance hits shares", "analysts expect strong earnings"] * 5


def test_fitted_on_the_given_texts_only_and_deterministic():
    enc = Word2VecEncoder(dim=8, min_count=1, epochs=3).fit(EN)
    vocab = set(enc.state()["vocabulary"])
    assert {"stock", "surges", "earnings"} <= vocab and "bankruptcy" not in vocab
    z = enc.encode(["stock surges", "bankruptcy filing", "STOCK Surges"])
    assert z.shape == (3, 8) and np.allclose(np.linalg.norm(z[[0, 2]], axis=1), 1, atol=1e-5)
    assert not z[1].any()  # no known word: zeros, not noise
    assert np.allclose(z[0], z[2])  # lower-cased tokens
    again = Word2VecEncoder(dim=8, min_count=1, epochs=3).fit(EN)
    assert _state_digest(enc.state()) == _state_digest(again.state())
    other = Word2VecEncoder(dim=8, min_count=1, epochs=3, seed=1).fit(EN)
    assert _state_digest(enc.state()) != _state_digest(other.state())  # the seed acts


def test_same_vectors_in_another_process_whatever_its_hash_seed():
    code = ("from lightquant.data.encoders import Word2VecEncoder, _state_digest; "
            f"print(_state_digest(Word2VecEncoder(dim=8, min_count=1, epochs=3).fit({EN!r}).state()))")
    digests = {subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": str(h), "PATH": "", "OMP_NUM_THREADS": "1"}).stdout.strip()
               for h in (1, 2)}
    here = _state_digest(Word2VecEncoder(dim=8, min_count=1, epochs=3).fit(EN).state())
    assert digests == {here}


def test_sif_removes_the_common_direction_and_mean_keeps_it():
    sif = Word2VecEncoder(dim=8, min_count=1, epochs=3).fit(EN)
    u = sif.state()["component"].numpy()
    assert np.linalg.norm(u) == pytest.approx(1, abs=1e-5)
    assert np.abs(sif.encode(EN) @ u).max() < 1e-4
    mean = Word2VecEncoder(dim=8, min_count=1, epochs=3, pooling="mean").fit(EN)
    assert not mean.state()["component"].any() and torch.equal(mean.state()["weights"], torch.ones(len(mean.state()["weights"])))


def test_chinese_texts_are_segmented_into_words():
    pytest.importorskip("jieba")
    zh = ["公司业绩大幅增长", "股价大幅下跌", "公司发布业绩预告", "业绩增长超预期"] * 3
    enc = Word2VecEncoder(dim=4, min_count=1, epochs=2).fit(zh)
    st = enc.state()
    assert st["tokenizer"] == "jieba" and "业绩" in st["vocabulary"] and "公司业绩大幅增长" not in st["vocabulary"]


def test_state_round_trip_and_cache(tmp_path):
    enc = Word2VecEncoder(dim=8, min_count=1, epochs=3)
    a = encode_cached(enc, EN, EN[:6], tmp_path)
    restored = Word2VecEncoder(dim=8).load_state(torch.load(_save(enc.state(), tmp_path), weights_only=True))
    assert np.allclose(restored.encode(EN[:6]), a, atol=1e-6)  # what evaluate.py / predict.py do with an export
    b = encode_cached(Word2VecEncoder(dim=8, min_count=1, epochs=3), EN, EN[:6], tmp_path)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="encoder=word2vec"):
        Word2VecEncoder().load_state({"kind": "tfidf-svd-1"})


def _save(state, tmp_path):
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("kw, key", [({"tokenizer": "spacy"}, "tokenizer"), ({"pooling": "max"}, "pooling"),
                                     ({"sg": 2}, "sg"), ({"min_count": 0}, "min_count"), ({"dim": 0}, "dim")])
def test_invalid_settings_name_the_key(kw, key):
    with pytest.raises(ValueError, match=f"encoder.{key}"):
        Word2VecEncoder(**kw)


def test_missing_gensim_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ImportError, match=r"\.\[word2vec\]"):
        Word2VecEncoder().fit(EN)


@pytest.mark.parametrize("model", ["han", "alstm"])
def test_news_models_train_end_to_end_on_it(cfg_factory, model):
    m = train(cfg_factory([f"model={model}", "use_news=true", "encoder=word2vec", "encoder.dim=16", "encoder.epochs=2",
                           "trainer.epochs=1", "dataset.max_num_tweets_len=4"]))
    assert m["test"]["n"] > 0 and 0 <= m["test"]["accuracy"] <= 1
